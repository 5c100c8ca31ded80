"""Module calls recomputed inside backward: activation checkpointing.

``torch.utils.checkpoint`` (and transformers' ``gradient_checkpointing_enable()``) runs a block's
forward again while backward needs its activations. Such a call comes from the autograd engine
(``torch._C._current_graph_task_id() != -1``, as torch's own ``mod_tracker`` tells it) with no
forward open. It is part of the backward that needs it: the outermost recomputed module records a
backward call spanning the recompute, its submodules record nothing, no forward call is counted
twice, and the backward pass is not taken for ended.
"""

from __future__ import annotations

from typing import Any

import torch

from greenprof.track.backward import hook_output_backward
from greenprof.track.events import BWD_ENTER, BWD_EXIT

_grad_enabled = torch.is_grad_enabled


# ``recorder`` is a :class:`~.hooks.HookRecorder` (typed ``Any``: the recorder imports this).
def enter_recompute(recorder: Any, key: int) -> None:
    """Module ``key`` starts a call that the autograd engine made (a recompute)."""
    if not recorder.recomputing:
        recorder._emit(BWD_ENTER, key)
    recorder.recomputing += 1


def exit_recompute(
    recorder: Any, module: torch.nn.Module, args: Any, kwargs: Any, output: Any
) -> None:
    """End a recomputed call, and time the backward of the graph it built.

    Reentrant checkpointing backpropagates through the recomputed graph (its first forward ran
    without gradients), so the recomputed calls' backward is hooked; where the recomputed graph is
    never run (non-reentrant checkpointing), the hooks on it never fire.
    """
    if not recorder.recomputing:
        return  # not a recompute: a module whose forward began before the hooks were in
    recorder.recomputing -= 1
    key = recorder.key_of_module(module)
    if key is None:
        return
    if not recorder.recomputing:
        recorder._emit(BWD_EXIT, key)
        recorder.last_node = None
    if _grad_enabled():
        hook_output_backward(recorder, key, args, kwargs, output)
