"""greenprof: which layers of your PyTorch model burn the joules.

Example:
    >>> import greenprof
    >>> with greenprof.profile() as prof:  # doctest: +SKIP
    ...     train_one_epoch(model)
    >>> print(prof.session.summary())  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Session", "profile", "optimize", "OptimizeResult", "__version__"]

if TYPE_CHECKING:
    from greenprof.profiler import profile
    from greenprof.recommend.loop import OptimizeResult, optimize
    from greenprof.session import Session

_LAZY = {
    "Session": ("greenprof.session", "Session"),
    "profile": ("greenprof.profiler", "profile"),
    "optimize": ("greenprof.recommend.loop", "optimize"),
    "OptimizeResult": ("greenprof.recommend.loop", "OptimizeResult"),
}


def __getattr__(name: str) -> Any:
    # Lazy so that `import greenprof` stays cheap and does not import torch until needed.
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        return getattr(importlib.import_module(module_name), attr)
    raise AttributeError(f"module 'greenprof' has no attribute {name!r}")
