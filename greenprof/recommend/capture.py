"""Record the inputs the workload feeds the model, for tracing and distillation."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from greenprof.recommend.actions.base import ModelCall
from greenprof.recommend.measure import Workload
from greenprof.recommend.outputs import map_tensors

#: Enough calls for a short distillation; few enough to keep memory small.
MAX_CALLS = 32


def capture_calls(model: nn.Module, workload: Workload, limit: int = MAX_CALLS) -> list[ModelCall]:
    """Run ``workload(model)`` once and return copies of the first ``limit`` calls of ``model``.

    Tensors are cloned outside inference mode, so they can feed training later even when the
    workload ran under ``torch.inference_mode()``. Under ``generate()`` only the first forward
    of each call (the whole prompt) is kept, without its key/value cache: a decode step needs
    the cache as it was, which the next step has already changed.
    """
    calls: list[ModelCall] = []

    def record(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if len(calls) < limit and (kwargs := _without_cache(kwargs)) is not None:
            calls.append((_copy(args), _copy(kwargs)))

    handle = model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        workload(model)
    finally:
        handle.remove()
    return calls


def _without_cache(kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """``kwargs`` with an empty key/value cache left out; ``None`` for a step that reads one."""
    caches = [k for k, v in kwargs.items() if callable(getattr(v, "get_seq_length", None))]
    if not caches:
        return kwargs
    if any(kwargs[k].get_seq_length() > 0 for k in caches):
        return None
    kept = {k: v for k, v in kwargs.items() if k not in caches}
    if "use_cache" in kept:
        kept["use_cache"] = False
    return kept


def _copy(value: Any) -> Any:
    return map_tensors(value, _clone)


def _clone(tensor: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode(False), torch.no_grad():
        return tensor.detach().clone()
