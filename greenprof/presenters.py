"""How data objects are shown, without the data modules importing any renderer.

:class:`~greenprof.session.Session` and :class:`~greenprof.optimize_result.OptimizeResult` hold
data; the report stage renders them. The package installs the report stage's renderers here when
it is imported (see ``greenprof/__init__.py``), so imports keep running down the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_PRESENTERS: dict[str, Callable[..., str]] = {}


def register_presenter(name: str, render: Callable[..., str]) -> None:
    """Install how data is shown under ``name`` (``"summary"``, ``"notebook"``, ...)."""
    _PRESENTERS[name] = render


def present(name: str, data: Any, **options: Any) -> str:
    """Render ``data`` with the presenter installed as ``name``.

    Raises:
        RuntimeError: nothing is installed under that name.
    """
    try:
        render = _PRESENTERS[name]
    except KeyError:
        raise RuntimeError(
            f"no {name!r} renderer is installed; import greenprof (the package) to install them"
        ) from None
    return render(data, **options)
