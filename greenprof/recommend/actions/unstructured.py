"""Unstructured magnitude pruning: the smallest weights set to zero.

Honest note: the layer keeps its dense shape, and dense CPU/GPU kernels multiply zeros as fast as
any other number, so this saves **no energy** unless a sparse kernel later runs the layer. It is
offered for completeness and as a first step towards sparse formats, with an expected saving of
zero, and the loop never tries it on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from greenprof.recommend.actions.base import ActionContext, ActionError, ActionSpec, check_targets
from greenprof.recommend.actions.modules import get_module, is_float_weight

NOTE = "dense kernels do not get faster with zeros: no energy saved without a sparse kernel"


def apply(
    model: nn.Module, targets: Sequence[str], context: ActionContext, *, amount: float = 0.5
) -> None:
    """Zero the ``amount`` share of smallest-magnitude weights in each target, in place.

    Raises:
        ActionError: a target has no float weight, or ``amount`` is outside [0, 1).
    """
    check_targets(model, targets, context)
    if not 0.0 <= amount < 1.0:
        raise ActionError(f"amount must be in [0, 1), got {amount}")
    for name in targets:
        module = get_module(model, name)
        if not is_float_weight(module):
            raise ActionError(f"{name!r} has no float weight to prune")
        weight = module.weight
        count = int(amount * weight.numel())
        if count == 0:
            continue
        with torch.no_grad():
            threshold = weight.abs().flatten().kthvalue(count).values
            weight.masked_fill_(weight.abs() <= threshold, 0.0)


SPEC = ActionSpec(name="unstructured", apply=apply)
