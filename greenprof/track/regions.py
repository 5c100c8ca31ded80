"""Named regions of a run: ``with greenprof.region("eval"):`` labels every row it covers.

A region is an enter and an exit event in the hooks' event stream, keyed by a region id; the
timeline keeps a stack of open regions and keys its columns by (module, phase, region), so a
module's time inside a region is a row of its own. Region ids are interned once per process and
never reused, so that ids recorded by the hooks stay valid until the session is built.

Regions nest; a row belongs to the innermost open one. The automatic ``eval`` region (outermost
forwards that run without gradients, in a run that also trains) never hides a user's region.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from greenprof.errors import ConfigError
from greenprof.track.events import AUTO_EVAL, NO_REGION, REGION_ENTER, REGION_EXIT
from greenprof.track.hooks import active_recorder

F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.Lock()
_names: list[str] = ["", "eval"]  # by id: NO_REGION, AUTO_EVAL, then the user's regions
_ids: dict[str, int] = {}
_open: list[str] = []  # names of the regions open under a profile, innermost last


def innermost_region() -> str:
    """Name of the innermost region open under the running profile ("" when none)."""
    return _open[-1] if _open else ""


def region_id(name: str) -> int:
    """The id of the user's region ``name``, interned on first use."""
    with _lock:
        rid = _ids.get(name)
        if rid is None:
            rid = _ids[name] = len(_names)
            _names.append(name)
        return rid


def region_name(rid: int) -> str:
    """The name of region id ``rid`` ("" outside any region)."""
    return _names[rid] if 0 <= rid < len(_names) else ""


class region:  # noqa: N801 - reads as a function: `with greenprof.region("eval"):`
    """Label what runs inside as region ``name``, in the ``region`` column of ``layers()``.

    Works as a context manager and as a decorator; outside a profile it does nothing, so code
    can keep its regions when it runs unprofiled. Regions nest: a row belongs to the innermost.

    Args:
        name: the region's name (not empty).

    Raises:
        ConfigError: when ``name`` is empty or not a string.

    Example:
        >>> import greenprof
        >>> with greenprof.profile() as prof:  # doctest: +SKIP
        ...     train_step(model)
        ...     with greenprof.region("validation"):
        ...         evaluate(model)
        >>> prof.session.layers().groupby("region")["energy_j"].sum()  # doctest: +SKIP
    """

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a region needs a non-empty name, got {name!r}")
        self.name = name
        self._id = region_id(name)
        self._entered: list[Any] = []  # the recorder each open `with` entered on (re-entrant)

    def __enter__(self) -> region:
        recorder = active_recorder()
        if recorder is not None:
            recorder._emit(REGION_ENTER, self._id)
            _open.append(self.name)
        self._entered.append(recorder)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        recorder = self._entered.pop() if self._entered else None
        # Only the recorder that saw the enter gets the exit (a profile may have ended inside).
        if recorder is not None and recorder is active_recorder():
            recorder._emit(REGION_EXIT, self._id)
        if recorder is not None and self.name in _open:
            del _open[len(_open) - 1 - _open[::-1].index(self.name)]

    def __call__(self, func: F) -> F:
        """Use as a decorator: every call of ``func`` runs inside this region."""

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with region(self.name):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


__all__ = ["AUTO_EVAL", "NO_REGION", "innermost_region", "region", "region_id", "region_name"]
