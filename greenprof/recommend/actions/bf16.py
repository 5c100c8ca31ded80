"""Run chosen modules in bfloat16, converting at their borders so callers still see float32.

Worth it only where the hardware has bf16 arithmetic (AVX-512 BF16 or AMX on x86 CPUs, compute
capability 8.0+ on NVIDIA GPUs); elsewhere bf16 is emulated and slower, so the rule asks
:func:`bf16_is_fast` first.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from greenprof.recommend.actions.base import ActionContext, ActionError, ActionSpec, check_targets
from greenprof.recommend.actions.modules import get_module
from greenprof.recommend.outputs import map_tensors


@functools.cache
def bf16_is_fast(device: str = "cpu") -> bool:
    """Return True when ``device`` ("cpu" or "cuda...") computes bf16 natively."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if probe is not None:
        try:
            return bool(probe())
        except RuntimeError:
            pass
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            flags = info.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def apply(model: nn.Module, targets: Sequence[str], context: ActionContext) -> None:
    """Convert the modules ``targets`` (``""`` = the whole model) to bf16, in place.

    Floating-point tensors entering a target are cast to bf16 and those leaving it are cast back
    to the dtype that came in, so the rest of the model and the user's metric stay in float32.

    Raises:
        ActionError: a target has no float32 parameters to convert.
    """
    check_targets(model, targets, context)
    for name in targets:
        module = get_module(model, name)
        params = [p for p in module.parameters() if p.is_floating_point()]
        if not params or any(p.dtype != torch.float32 for p in params):
            raise ActionError(f"{name or '(model)'!r} is not a float32 module")
        module.to(torch.bfloat16)
        module.register_forward_pre_hook(_inputs_to_bf16, with_kwargs=True)
        module.register_forward_hook(_outputs_to_float32)


def _inputs_to_bf16(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return _cast(args, torch.bfloat16), _cast(kwargs, torch.bfloat16)


def _outputs_to_float32(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
    return _cast(output, torch.float32)


def _cast(value: Any, dtype: torch.dtype) -> Any:
    return map_tensors(value, lambda t: t.to(dtype) if t.is_floating_point() else t)


SPEC = ActionSpec(name="bf16", apply=apply)
