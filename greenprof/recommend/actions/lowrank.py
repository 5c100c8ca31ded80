"""Low-rank factorization: one linear layer becomes two thinner ones by truncated SVD.

``W (out x in)`` is replaced by ``up @ down`` with ``down: in -> k`` and ``up: k -> out``, where
``k`` keeps the given share of the spectral energy (sum of squared singular values). It saves
multiply-adds only when ``k * (in + out) < in * out``; otherwise the action refuses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from greenprof.recommend.actions.base import ActionContext, ActionError, ActionSpec, check_targets
from greenprof.recommend.actions.modules import as_linear, is_float_weight, set_module

#: Below this fraction of the original multiply-adds a factorization is worth its extra layer.
MAX_COST_RATIO = 0.8


class LowRankLinear(nn.Module):
    """``up(down(x))``: a rank-``k`` stand-in for a linear layer.

    Example:
        >>> layer = LowRankLinear(nn.Linear(64, 8, bias=False), nn.Linear(8, 32))
        >>> layer(torch.zeros(2, 64)).shape
        torch.Size([2, 32])
    """

    def __init__(self, down: nn.Linear, up: nn.Linear) -> None:
        super().__init__()
        self.down = down
        self.up = up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the factorized layer."""
        return self.up(self.down(x))


def rank_for_share(weight: torch.Tensor, energy_share: float) -> int:
    """Return the smallest rank whose singular values keep ``energy_share`` of ``sum(s**2)``."""
    singular = torch.linalg.svdvals(weight.detach().float())
    energy = singular.square().cumsum(0)
    return int(torch.searchsorted(energy, energy_share * energy[-1]).item()) + 1


def cost_ratio(in_features: int, out_features: int, rank: int) -> float:
    """Multiply-adds of the factorized layer over those of the dense one."""
    return rank * (in_features + out_features) / (in_features * out_features)


def apply(
    model: nn.Module,
    targets: Sequence[str],
    context: ActionContext,
    *,
    energy_share: float = 0.9,
) -> None:
    """Factorize each linear layer in ``targets`` keeping ``energy_share`` of its spectrum.

    Raises:
        ActionError: a target is not a float linear layer, or its rank is too high to save work.
    """
    check_targets(model, targets, context)
    if not 0.0 < energy_share <= 1.0:
        raise ActionError(f"energy_share must be in (0, 1], got {energy_share}")
    for name in targets:
        layer = as_linear(model, name)
        if not is_float_weight(layer):
            raise ActionError(f"{name!r} has no float weight to factorize")
        rank = rank_for_share(layer.weight, energy_share)
        ratio = cost_ratio(layer.in_features, layer.out_features, rank)
        if ratio > MAX_COST_RATIO:
            raise ActionError(
                f"{name!r} needs rank {rank} of {min(layer.in_features, layer.out_features)} to "
                f"keep {energy_share:.0%} of its spectral energy: {ratio:.0%} of the dense cost"
            )
        set_module(model, name, _factorize(layer, rank))


def _factorize(layer: nn.Linear, rank: int) -> LowRankLinear:
    weight = layer.weight.detach()
    u, s, vh = torch.linalg.svd(weight.float(), full_matrices=False)
    root = s[:rank].sqrt()
    kind = {"device": weight.device, "dtype": weight.dtype}
    down = nn.Linear(layer.in_features, rank, bias=False, **kind)
    up = nn.Linear(rank, layer.out_features, bias=layer.bias is not None, **kind)
    with torch.no_grad():
        # Splitting sqrt(s) between both factors keeps their scales alike, which helps fine-tuning.
        down.weight.copy_(root[:, None] * vh[:rank])
        up.weight.copy_(u[:, :rank] * root[None, :])
        if layer.bias is not None:
            up.bias.copy_(layer.bias)
    return LowRankLinear(down, up)


SPEC = ActionSpec(name="lowrank", apply=apply, heal=True)
