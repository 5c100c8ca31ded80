"""Reading the one tensor that matters out of whatever a model returns."""

from __future__ import annotations

from collections.abc import Callable
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


def map_tensors(value: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply ``fn`` to every tensor inside tuples, lists and dicts; leave everything else.

    Plain containers are rebuilt; dict subclasses (such as transformers' ``ModelOutput``) are
    updated in place so that they keep their type and attributes.
    """
    if isinstance(value, torch.Tensor):
        return fn(value)
    if type(value) is dict:
        return {key: map_tensors(item, fn) for key, item in value.items()}
    if isinstance(value, dict):
        for key in list(value.keys()):
            value[key] = map_tensors(value[key], fn)
        return value
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(map_tensors(v, fn) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(map_tensors(v, fn) for v in value)
    return value
