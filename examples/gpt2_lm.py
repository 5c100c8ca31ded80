"""A small GPT-2 language model of Python source, made cheaper to run by greenprof.optimize.

GPT-2 is built from a config (no pretrained weights; bytes are the tokens) and trained for a
minute on standard-library source. Its perplexity on held-out library files is the metric;
``greenprof.optimize`` makes scoring text cheaper while perplexity may rise by at most 3%.

    python examples/gpt2_lm.py
    greenprof optimize examples/gpt2_lm.py:make_task
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _data  # noqa: E402
from _shared import run_example, threads, train  # noqa: E402

PACKAGES = ["asyncio", "email", "json", "logging", "unittest", "concurrent", "importlib"]
CONTEXT = 128
TRAIN_STEPS = 300
BATCH = 16
#: Sequences per workload call (scoring held-out "traffic" text) and for the perplexity.
TRAFFIC = 64
TEST = 256


def build_model() -> torch.nn.Module:
    """A 4-layer, 256-wide GPT-2 over bytes."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=256,
        n_positions=CONTEXT,
        n_embd=256,
        n_layer=4,
        n_head=4,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(config)


def split_stream(split: str) -> torch.Tensor:
    """The bytes of the files of one split (see ``_data.split_of``) as one token stream."""
    files = [
        path
        for package in PACKAGES
        for path in _data.package_files(package)
        if _data.split_of(path) == split
    ]
    data = b"\n".join(path.read_bytes() for path in files)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).long()


def windows(stream: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` evenly spaced, non-overlapping windows of ``CONTEXT`` tokens."""
    step = max(CONTEXT, (len(stream) - CONTEXT) // count)
    starts = torch.arange(count) * step
    return torch.stack([stream[s : s + CONTEXT] for s in starts.tolist()])


def make_task(steps: int = TRAIN_STEPS) -> dict:
    """Train the model and return ``model``, ``workload`` and ``evaluate`` for optimize."""
    torch.manual_seed(0)
    train_stream = split_stream("train")
    test = windows(split_stream("test"), TEST)
    traffic = windows(split_stream("traffic"), TRAFFIC).split(16)

    def batch(generator: torch.Generator) -> dict[str, torch.Tensor]:
        starts = torch.randint(0, len(train_stream) - CONTEXT, (BATCH,), generator=generator)
        ids = torch.stack([train_stream[s : s + CONTEXT] for s in starts.tolist()])
        return {"input_ids": ids, "labels": ids, "use_cache": False}

    model = build_model()
    print(f"training on {len(train_stream) / 1e6:.1f} MB of source for {steps} steps")
    train(model, batch, steps=steps, lr=1e-3)

    def workload(model: torch.nn.Module) -> None:
        with threads(1), torch.inference_mode():
            for ids in traffic:
                model(input_ids=ids, use_cache=False)

    def evaluate(model: torch.nn.Module) -> float:
        losses = []
        with torch.inference_mode():
            for ids in test.split(64):
                losses.append(float(model(input_ids=ids, labels=ids, use_cache=False).loss))
        return math.exp(sum(losses) / len(losses))

    return {
        "model": model,
        "workload": workload,
        "evaluate": evaluate,
        "max_metric_drop": 0.03,
        "relative": True,
        "higher_is_better": False,
        "samples_per_call": TRAFFIC,
    }


def main() -> None:
    run_example(
        make_task,
        description=__doc__.splitlines()[0],
        steps=TRAIN_STEPS,
        out="reports/optimize-gpt2",
        metric="perplexity",
        fmt=".3f",
    )


if __name__ == "__main__":
    main()
