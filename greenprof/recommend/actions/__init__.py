"""Compression actions, one small module per technique, all behind one registry.

Each action changes a model in place and raises :class:`ActionError` when it cannot.

Example:
    >>> from torch import nn
    >>> from greenprof.recommend.actions import ActionContext, get_action
    >>> model = nn.Sequential(nn.Linear(8, 8))
    >>> get_action("unstructured").apply(model, ["0"], ActionContext(), amount=0.5)
    >>> int((model[0].weight == 0).sum())
    32
"""

from __future__ import annotations

from greenprof.recommend.actions import bf16, distill, lowrank, prune, quantize, unstructured
from greenprof.recommend.actions.base import ActionContext, ActionError, ActionSpec, ModelCall

__all__ = ["ACTIONS", "ActionContext", "ActionError", "ActionSpec", "ModelCall", "get_action"]

#: Every action the rules may propose, by name.
ACTIONS: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        quantize.SPEC,
        bf16.SPEC,
        prune.FFN_SPEC,
        prune.HEADS_SPEC,
        prune.CHANNELS_SPEC,
        lowrank.SPEC,
        distill.SPEC,
        unstructured.SPEC,
    )
}


def get_action(name: str) -> ActionSpec:
    """Return the registered action ``name``.

    Raises:
        ActionError: no action has that name.
    """
    try:
        return ACTIONS[name]
    except KeyError:
        raise ActionError(f"unknown action {name!r}; known: {', '.join(ACTIONS)}") from None
