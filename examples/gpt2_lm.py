"""A small GPT-2 completing lines of Python, made cheaper per generated token by greenprof.optimize.

GPT-2 is built from a config (no pretrained weights; bytes are the tokens) and trained briefly on
standard-library source. The workload completes the first bytes of held-out lines with
``generate()`` (greedy; a newline ends a line), so ``greenprof.optimize`` judges each change by
its joules per new token (objective ``j-per-token``, chosen because the workload generates);
perplexity on held-out library files may rise by at most 3%.

    python examples/gpt2_lm.py
    greenprof optimize examples/gpt2_lm.py:make_task
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _data  # noqa: E402
from _shared import run_example, threads, train  # noqa: E402

PACKAGES = ["asyncio", "email", "json", "logging", "unittest", "concurrent", "importlib"]
CONTEXT = 64
BATCH = 16
TRAIN_STEPS = 150
NEWLINE = ord("\n")
PAD = 0  # the NUL byte never occurs in the library's source
#: Prompts: the first bytes of held-out lines, completed up to their newline.
PROMPT_BYTES = 12
PROMPTS = 8
MAX_NEW_TOKENS = 32
#: Windows of held-out text for the perplexity.
TEST = 128


def build_model(n_layer: int = 4, n_embd: int = 128) -> torch.nn.Module:
    """A GPT-2 over bytes (``n_layer`` blocks, ``n_embd`` wide); a newline ends a sequence."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=256,
        n_positions=CONTEXT + MAX_NEW_TOKENS,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=4,
        bos_token_id=NEWLINE,
        eos_token_id=NEWLINE,
        pad_token_id=PAD,
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


def batches(stream: torch.Tensor) -> Callable[[torch.Generator], dict[str, torch.Tensor]]:
    """Training batches for ``_shared.train``: random windows of ``stream``, next-byte labels."""

    def batch(generator: torch.Generator) -> dict[str, torch.Tensor]:
        starts = torch.randint(0, len(stream) - CONTEXT, (BATCH,), generator=generator)
        ids = torch.stack([stream[s : s + CONTEXT] for s in starts.tolist()])
        return {"input_ids": ids, "labels": ids, "use_cache": False}

    return batch


def prompts(stream: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first bytes of ``count`` lines of ``stream``, left-padded, with their attention mask.

    Prompts are 9 to 12 bytes long, so the batch holds padding the mask has to exclude.
    """
    text = bytes(stream.to(torch.uint8).tolist()).decode("utf-8", "replace")
    lines = [line.strip() for line in text.splitlines() if len(line.strip()) > 2 * PROMPT_BYTES]
    step = max(1, len(lines) // count)
    heads = [line.encode()[: PROMPT_BYTES - i % 4] for i, line in enumerate(lines[::step][:count])]
    ids = torch.full((len(heads), PROMPT_BYTES), PAD, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, head in enumerate(heads):
        ids[row, PROMPT_BYTES - len(head) :] = torch.tensor(list(head))
        mask[row, PROMPT_BYTES - len(head) :] = 1
    return ids, mask


def complete(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Greedy completion of the prompts, up to each line's newline or ``MAX_NEW_TOKENS``."""
    return model.generate(ids, attention_mask=mask, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)


def perplexity(model: torch.nn.Module, test: torch.Tensor) -> float:
    """exp of the mean next-byte loss over the windows ``test``."""
    losses = []
    with torch.inference_mode():
        for ids in test.split(64):
            losses.append(float(model(input_ids=ids, labels=ids, use_cache=False).loss))
    return math.exp(sum(losses) / len(losses))


def trained(steps: int = TRAIN_STEPS, **shape: int) -> torch.nn.Module:
    """A GPT-2 of ``build_model(**shape)`` trained ``steps`` steps on the training split."""
    torch.manual_seed(0)
    stream = split_stream("train")
    model = build_model(**shape)
    print(f"training on {len(stream) / 1e6:.1f} MB of source for {steps} steps")
    train(model, batches(stream), steps=steps, lr=3e-3, log_every=max(steps // 3, 1))
    return model


def make_task(steps: int = TRAIN_STEPS) -> dict:
    """Train the model and return ``model``, ``workload`` and ``evaluate`` for optimize."""
    model = trained(steps)
    ids, mask = prompts(split_stream("traffic"), PROMPTS)
    test = windows(split_stream("test"), TEST)

    def workload(model: torch.nn.Module) -> None:
        with threads(1), torch.inference_mode():
            complete(model, ids, mask)

    return {
        "model": model,
        "workload": workload,
        "evaluate": lambda model: perplexity(model, test),
        "max_metric_drop": 0.03,
        "relative": True,
        "higher_is_better": False,
        "samples_per_call": PROMPTS,
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
