"""Helpers for the recommend tests: checksums, tiny models, a deterministic profiler stand-in."""

from __future__ import annotations

import hashlib

import pandas as pd
import torch
from torch import nn

from greenprof.recommend.actions.modules import is_float_weight
from greenprof.session import Session


def checksum(module: nn.Module) -> str:
    """Digest of every parameter and buffer, to prove a module did not change."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        if isinstance(tensor, torch.Tensor):
            digest.update(_plain(tensor).numpy().tobytes())
        else:
            digest.update(repr(tensor).encode())
    return digest.hexdigest()


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.is_quantized:
        tensor = tensor.dequantize()
    elif type(tensor) not in (torch.Tensor, nn.Parameter):  # torchao's quantized weights
        tensor = tensor.dequantize()
    return tensor.detach().float().contiguous()


def checksums(model: nn.Module) -> dict[str, str]:
    """Checksum of each leaf module's own parameters, by name."""
    return {
        name: checksum(module)
        for name, module in model.named_modules()
        if not list(module.children()) and list(module.parameters(recurse=False))
    }


def cost(module: nn.Module) -> float:
    """Joules per call of a layer in the fake profiler: weights, cheaper when compressed."""
    weight = getattr(module, "weight", None)
    if callable(weight):  # torch.ao dynamic quantized Linear: weight() is a method
        return 0.3 * module.in_features * module.out_features
    if not isinstance(weight, torch.Tensor):
        return 0.0
    if not is_float_weight(module):  # torchao tensor subclass
        return 0.5 * weight.numel()
    scale = 0.4 if weight.dtype == torch.bfloat16 else 1.0
    return scale * weight.numel()


class Meter:
    """A workload that remembers the model it ran, and a profiler that prices it by :func:`cost`."""

    def __init__(self, inputs: dict[str, torch.Tensor] | torch.Tensor) -> None:
        self.inputs = inputs
        self.model: nn.Module | None = None
        self.calls = 0

    def workload(self, model: nn.Module) -> None:
        self.model = model
        self.calls += 1
        with torch.inference_mode():
            if isinstance(self.inputs, dict):
                model(**self.inputs)
            else:
                model(self.inputs)

    def profiler(self) -> FakeProfile:
        return FakeProfile(self)


class FakeProfile:
    """Context manager shaped like ``greenprof.profile``; joules are exact, never noisy."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.session: Session | None = None

    def __enter__(self) -> FakeProfile:
        self.start = self.meter.calls
        return self

    def __exit__(self, *exc: object) -> None:
        calls = self.meter.calls - self.start
        assert self.meter.model is not None
        rows = [
            {
                "module": name,
                "type": type(module).__name__,
                "phase": "forward",
                "calls": calls,
                "time_s": 0.0,
                "energy_j": cost(module) * calls * 1e-6,
                "energy_lo_j": cost(module) * calls * 1e-6,
                "energy_hi_j": cost(module) * calls * 1e-6,
            }
            for name, module in self.meter.model.named_modules()
        ]
        meta = {"sensors": [{"name": "fake", "device": "cpu", "measured": True}]}
        self.session = Session(meta, pd.DataFrame(rows))


class Blocks(nn.Module):
    """Embedding, three residual MLP blocks in a ModuleList, and a head: every rule has a target."""

    def __init__(self, width: int = 32, hidden: int = 128, vocab: int = 50, classes: int = 3):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
            for _ in range(3)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(input_ids)
        for block in self.blocks:
            x = x + block(x)
        return self.head(self.norm(x).mean(1))
