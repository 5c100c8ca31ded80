"""greenprof: which layers of your PyTorch model burn the joules.

Example:
    >>> import greenprof
    >>> with greenprof.profile() as prof:  # doctest: +SKIP
    ...     train_one_epoch(model)
    >>> print(prof.session.summary())  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from greenprof.version import __version__

__all__ = ["Session", "profile", "region", "tokens", "optimize", "OptimizeResult", "__version__"]

if TYPE_CHECKING:
    from greenprof.profiler import profile
    from greenprof.recommend.loop import OptimizeResult, optimize
    from greenprof.session import Session
    from greenprof.track.generation import tokens
    from greenprof.track.regions import region

_LAZY = {
    "Session": ("greenprof.session", "Session"),
    "profile": ("greenprof.profiler", "profile"),
    "region": ("greenprof.track.regions", "region"),
    "tokens": ("greenprof.track.generation", "tokens"),
    "optimize": ("greenprof.recommend.loop", "optimize"),
    "OptimizeResult": ("greenprof.recommend.loop", "OptimizeResult"),
}


def _install_presenters() -> None:
    """Let sessions and optimize results show themselves through the report stage.

    The data modules import no renderer (imports run down the pipeline); the package's face wires
    them together, lazily, so that ``import greenprof`` imports neither pandas nor matplotlib.
    """
    from greenprof import presenters

    def renderer(module: str, attr: str) -> Any:
        def render(data: Any, **options: Any) -> str:
            import importlib

            return getattr(importlib.import_module(module), attr)(data, **options)

        return render

    presenters.register_presenter("summary", renderer("greenprof.report.console", "render_summary"))
    presenters.register_presenter(
        "notebook", renderer("greenprof.report.notebook", "render_notebook_html")
    )
    presenters.register_presenter(
        "tensorboard", renderer("greenprof.report.tensorboard", "write_tensorboard")
    )
    presenters.register_presenter("wandb", renderer("greenprof.report.wandb", "log_wandb"))
    presenters.register_presenter(
        "optimize_html", renderer("greenprof.report.optimize_html", "render_optimize_html")
    )


_install_presenters()


def __getattr__(name: str) -> Any:
    # Lazy so that `import greenprof` stays cheap and does not import torch until needed.
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        return getattr(importlib.import_module(module_name), attr)
    raise AttributeError(f"module 'greenprof' has no attribute {name!r}")
