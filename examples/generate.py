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

from _shared import threads  # noqa: E402
from gpt2_lm import PAD, PROMPT_BYTES, complete, prompts, split_stream, trained  # noqa: E402

import greenprof  # noqa: E402

TRAIN_STEPS = 120
#: generate() calls in the profile: enough for a profile of a few seconds (tighter intervals).
CALLS = 24
#: The model: smaller than the optimize example's, to keep this one short.
SHAPE = {"n_layer": 2, "n_embd": 128}


def main() -> None:
    model = trained(TRAIN_STEPS, **SHAPE)
    ids, mask = prompts(split_stream("test"), 8)
    with threads(1), torch.inference_mode(), greenprof.profile(calibrate=False) as prof:
        for _ in range(CALLS):
            out = complete(model, ids, mask)
    session = prof.session
    for row in range(3):
        prompt = bytes(ids[row][mask[row] == 1].tolist()).decode("utf-8", "replace")
        new = bytes(t for t in out[row, PROMPT_BYTES:].tolist() if t != PAD)
        print(f"  {prompt!r} -> {new.decode('utf-8', 'replace')!r}")
    columns = ["prompt_tokens", "new_tokens", "prefill_s", "decode_s", "prefill_j", "decode_j"]
    columns += ["j_per_new_token", "j_per_prompt_token"]
    table = session.generation()[columns]
    print(table.head(3).to_string())
    print(f"... {len(table)} calls in all")
    print(session.summary(n=5))


if __name__ == "__main__":
    main()
