"""Finding the tensors of a module's inputs and outputs that autograd will reach."""

from __future__ import annotations

from typing import Any

import torch


def first_grad_tensor(value: Any) -> torch.Tensor | None:
    """Return the first tensor needing a gradient in a tensor, sequence or mapping (one level)."""
    if isinstance(value, torch.Tensor):
        return value if value.requires_grad else None
    if isinstance(value, (tuple, list)):
        items: Any = value
    elif isinstance(value, dict):  # also transformers' ModelOutput
        items = value.values()
    else:
        return None
    for item in items:
        if isinstance(item, torch.Tensor) and item.requires_grad:
            return item
    return None
