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
    workload ran under ``torch.inference_mode()``.
    """
    calls: list[ModelCall] = []

    def record(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if len(calls) < limit:
            calls.append((_copy(args), _copy(kwargs)))

    handle = model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        workload(model)
    finally:
        handle.remove()
    return calls


def _copy(value: Any) -> Any:
    return map_tensors(value, _clone)


def _clone(tensor: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode(False), torch.no_grad():
        return tensor.detach().clone()
