"""Reading the one tensor that matters out of whatever a model returns."""

from __future__ import annotations

from typing import Any

import torch


def main_tensor(output: Any) -> torch.Tensor:
    """Return the model's main output: a tensor itself, ``.logits``, or the first tensor inside.

    Raises:
        TypeError: when the output holds no tensor at all.
    """
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            try:
                return main_tensor(item)
            except TypeError:
                continue
    raise TypeError(f"cannot find a tensor in a model output of type {type(output).__name__}")
