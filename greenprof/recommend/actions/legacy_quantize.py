"""int8 dynamic quantization through the deprecated ``torch.ao.quantization.quantize_dynamic``.

Kept alone in this module so it can be deleted the day PyTorch removes the API; the
``int8_dynamic`` action then offers torchao only.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn


def quantize(model: nn.Module, names: list[str]) -> None:
    """Replace the ``nn.Linear`` layers ``names`` of ``model`` by dynamic int8 ones, in place."""
    qconfig = torch.ao.quantization.default_dynamic_qconfig
    with warnings.catch_warnings():
        # The deprecation warning is the reason this path is optional, not news to the user.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions")
        torch.ao.quantization.quantize_dynamic(
            model, {name: qconfig for name in names}, dtype=torch.qint8, inplace=True
        )
