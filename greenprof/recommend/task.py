"""Load an optimize task, ``path/to/file.py:make_task``, for ``greenprof optimize``."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from greenprof.errors import ConfigError

#: Keys a task dict may hold besides the three required ones: defaults for the CLI options.
OPTION_KEYS = ("max_metric_drop", "higher_is_better", "relative", "exclude", "objective")


@dataclass
class Task:
    """What ``make_task()`` returned.

    Attributes:
        model: the trained model.
        workload: ``workload(model)`` runs the work to make cheaper.
        evaluate: ``evaluate(model) -> float`` scores a model.
        options: defaults for :func:`greenprof.optimize` the task suggests (see
            :data:`OPTION_KEYS`); command-line options override them.
    """

    model: nn.Module
    workload: Callable[[nn.Module], Any]
    evaluate: Callable[[nn.Module], float]
    options: dict[str, Any] = field(default_factory=dict)


def load_task(spec: str) -> Task:
    """Import ``file.py`` of ``"file.py:function"``, call the function and check what it returns.

    The function may return ``(model, workload, evaluate)``, a namedtuple or object with those
    attributes, or a dict with those keys (and optionally :data:`OPTION_KEYS`).

    Raises:
        ConfigError: with a one-line message when the file, the function or the returned values
            are missing or wrong, or the file fails to import.
    """
    path_text, colon, function_name = spec.rpartition(":")
    if not colon or not path_text or not function_name:
        raise ConfigError(f"{spec!r}: expected FILE.py:FUNCTION, e.g. examples/task.py:make_task")
    path = Path(path_text)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    module = _import(path)
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError(f"{path}: has no function {function_name!r}")
    return _check(function(), spec)


def _import(path: Path) -> Any:
    name = f"greenprof_task_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    # Like `python file.py`: the file's own folder is importable (shared helpers next to it).
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(f"{path}: importing it failed: {type(exc).__name__}: {exc}") from exc
    return module


def _check(value: Any, spec: str) -> Task:
    options: dict[str, Any] = {}
    if isinstance(value, dict):
        parts = tuple(value.get(key) for key in ("model", "workload", "evaluate"))
        options = {key: value[key] for key in OPTION_KEYS if key in value}
    elif all(hasattr(value, key) for key in ("model", "workload", "evaluate")):
        parts = (value.model, value.workload, value.evaluate)
    elif isinstance(value, (tuple, list)) and len(value) == 3:
        parts = tuple(value)
    else:
        raise ConfigError(
            f"{spec}: must return (model, workload, evaluate) or a dict with those keys, "
            f"got {type(value).__name__}"
        )
    model, workload, evaluate = parts
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{spec}: model must be a torch.nn.Module, got {type(model).__name__}")
    for name, item in (("workload", workload), ("evaluate", evaluate)):
        if not callable(item):
            raise ConfigError(f"{spec}: {name} must be callable, got {type(item).__name__}")
    return Task(model, workload, evaluate, options)
