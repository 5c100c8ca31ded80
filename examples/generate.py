"""Joules per generated token: a small GPT-2 completes lines of Python, prefill and decode apart.

GPT-2 is built from a config (no pretrained weights; bytes are the tokens), trained for a few
seconds on standard-library source, then asked to complete the first bytes of held-out lines.
A line ends at its newline (the end-of-sequence token), so each sequence stops on its own.
``model.generate`` runs inside ``greenprof.profile()``; ``session.generation()`` has one row
per call, with joules per new token (decode) and per prompt token (prefill).

    python examples/generate.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _shared import threads, train  # noqa: E402
from gpt2_lm import split_stream  # noqa: E402

import greenprof  # noqa: E402

CONTEXT = 64
TRAIN_STEPS = 60
BATCH = 8
NEWLINE = ord("\n")
PAD = 0  # the NUL byte never occurs in the library's source
PROMPT_BYTES = 12
PROMPTS = 8
MAX_NEW_TOKENS = 48


def build_model() -> torch.nn.Module:
    """A 2-layer, 128-wide GPT-2 over bytes; a newline ends a sequence."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=256,
        n_positions=CONTEXT + MAX_NEW_TOKENS,
        n_embd=128,
        n_layer=2,
        n_head=4,
        bos_token_id=NEWLINE,
        eos_token_id=NEWLINE,
        pad_token_id=PAD,
    )
    return GPT2LMHeadModel(config)


def prompts(stream: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first bytes of ``count`` held-out lines, left-padded, with their attention mask."""
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


def main() -> None:
    torch.manual_seed(0)
    train_stream = split_stream("train")

    def batch(generator: torch.Generator) -> dict[str, torch.Tensor]:
        starts = torch.randint(0, len(train_stream) - CONTEXT, (BATCH,), generator=generator)
        ids = torch.stack([train_stream[s : s + CONTEXT] for s in starts.tolist()])
        return {"input_ids": ids, "labels": ids, "use_cache": False}

    model = build_model()
    print(f"training a 2-layer GPT-2 for {TRAIN_STEPS} steps")
    train(model, batch, steps=TRAIN_STEPS, lr=3e-3, log_every=20)
    ids, mask = prompts(split_stream("test"), PROMPTS)
    with threads(1), greenprof.profile(calibrate=False) as prof:
        for _ in range(3):
            out = model.generate(
                ids, attention_mask=mask, max_new_tokens=MAX_NEW_TOKENS, do_sample=False
            )
    session = prof.session
    for row in range(2):
        prompt = bytes(ids[row][mask[row] == 1].tolist()).decode("utf-8", "replace")
        new = bytes(t for t in out[row, PROMPT_BYTES:].tolist() if t != PAD)
        print(f"  {prompt!r} -> {new.decode('utf-8', 'replace')!r}")
    columns = ["prompt_tokens", "new_tokens", "prefill_s", "decode_s", "prefill_j", "decode_j"]
    columns += ["j_per_new_token", "j_per_prompt_token"]
    print(session.generation()[columns].to_string())
    print(session.summary(n=5))


if __name__ == "__main__":
    main()
