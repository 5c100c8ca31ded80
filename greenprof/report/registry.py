"""Renderers by name: what ``greenprof report``, ``top`` and ``export`` look up.

A renderer turns a :class:`~greenprof.session.Session` into text for the terminal or into a file.
Built-in renderers are imported only when used (the HTML report pulls in matplotlib); add one with
:func:`register`.

Example:
    >>> from greenprof.report.registry import get, names
    >>> "chrome" in names(files=True)
    True
    >>> get("console").default_file is None
    True
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from greenprof.errors import ConfigError
from greenprof.session import Session


@dataclass(frozen=True)
class Renderer:
    """One way of showing a session.

    Attributes:
        name: what users type (``--format NAME``).
        description: one line for ``--help``.
        target: ``"module:function"``; the function takes ``(session, **options)`` and returns
            text (terminal renderers) or ``(session, path, **options)`` and returns the path
            written (file renderers).
        default_file: file (or folder) name inside the run directory; ``None`` for terminal
            renderers.
    """

    name: str
    description: str
    target: str
    default_file: str | None = None

    def function(self) -> Callable[..., Any]:
        """Import and return the rendering function."""
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def text(self, session: Session, **options: Any) -> str:
        """Render to text (terminal renderers)."""
        return self.function()(session, **options)

    def write(self, session: Session, path: Path, **options: Any) -> Path:
        """Render into ``path`` (file renderers); returns what was written."""
        return self.function()(session, path, **options)


_RENDERERS: dict[str, Renderer] = {}


def register(renderer: Renderer) -> None:
    """Add (or replace) a renderer."""
    _RENDERERS[renderer.name] = renderer


def get(name: str) -> Renderer:
    """Return the renderer called ``name``.

    Raises:
        ConfigError: no renderer has that name.
    """
    try:
        return _RENDERERS[name]
    except KeyError:
        raise ConfigError(f"unknown renderer {name!r}; known: {', '.join(_RENDERERS)}") from None


def names(*, files: bool | None = None) -> list[str]:
    """Registered names; ``files=True`` only file renderers, ``False`` only terminal ones."""
    return [
        r.name
        for r in _RENDERERS.values()
        if files is None or (r.default_file is not None) == files
    ]


for _builtin in (
    Renderer(
        "console", "Top layers as a terminal table.", "greenprof.report.console:render_summary"
    ),
    Renderer(
        "html",
        "Self-contained HTML report.",
        "greenprof.report.html:write_html",
        "report.html",
    ),
    Renderer(
        "chrome",
        "Chrome/Perfetto trace event JSON (ui.perfetto.dev, about:tracing).",
        "greenprof.report.chrome:write_chrome_trace",
        "trace.json",
    ),
    Renderer(
        "csv",
        "The layers, samples and spans tables as CSV files in a folder.",
        "greenprof.report.tables_export:write_csv",
        "export-csv",
    ),
    Renderer(
        "parquet",
        "The layers, samples and spans tables as Parquet files in a folder (needs pyarrow).",
        "greenprof.report.tables_export:write_parquet",
        "export-parquet",
    ),
):
    register(_builtin)
