"""Finding, replacing and normalising the layers actions work on."""

from __future__ import annotations

import torch
from torch import nn

from greenprof.recommend.actions.base import ActionError


def get_module(model: nn.Module, name: str) -> nn.Module:
    """Return the submodule called ``name`` (``""`` is the model itself)."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ActionError(f"no module named {name!r} in the model") from None


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule ``name`` is."""
    if not name:
        raise ActionError("the root module cannot be replaced in place")
    parent_name, _, child = name.rpartition(".")
    setattr(get_module(model, parent_name), child, new)


def is_conv1d(module: nn.Module) -> bool:
    """True for GPT-2's transposed "Conv1D" linear layer (``weight`` is in x out)."""
    return (
        type(module).__name__ == "Conv1D"
        and hasattr(module, "nf")
        and isinstance(getattr(module, "weight", None), torch.Tensor)
        and module.weight.dim() == 2
    )


def is_linear_like(module: nn.Module) -> bool:
    """True for ``nn.Linear`` and GPT-2's ``Conv1D``: the layers int8, low-rank, pruning take."""
    return type(module) is nn.Linear or is_conv1d(module)


def is_float_weight(module: nn.Module, dtype: torch.dtype | None = None) -> bool:
    """True when ``module.weight`` is a plain floating tensor (not quantized, not a subclass)."""
    weight = getattr(module, "weight", None)
    if type(weight) not in (torch.Tensor, nn.Parameter) or not weight.is_floating_point():
        return False
    return dtype is None or weight.dtype == dtype


def linear_shape(module: nn.Module) -> tuple[int, int]:
    """Return ``(in_features, out_features)`` of a linear-like layer."""
    if is_conv1d(module):
        return int(module.weight.shape[0]), int(module.weight.shape[1])
    return int(module.in_features), int(module.out_features)


def as_linear(model: nn.Module, name: str) -> nn.Linear:
    """Return the linear layer ``name``, first turning a ``Conv1D`` into an equal ``nn.Linear``.

    Quantizers and Torch-Pruning only know ``nn.Linear``; the conversion is exact (a transpose).
    """
    module = get_module(model, name)
    if type(module) is nn.Linear:
        return module
    if not is_conv1d(module):
        raise ActionError(f"{name!r} is a {type(module).__name__}, not a linear layer")
    in_features, out_features = linear_shape(module)
    weight = module.weight
    linear = nn.Linear(
        in_features,
        out_features,
        bias=module.bias is not None,
        device=weight.device,
        dtype=weight.dtype,
    )
    with torch.no_grad():
        linear.weight.copy_(weight.t())
        if module.bias is not None:
            linear.bias.copy_(module.bias)
    set_module(model, name, linear)
    return linear
