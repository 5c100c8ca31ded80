"""A BERT-style classifier of Python source lines, made cheaper to run by greenprof.optimize.

The task is real and ships with Python: is a line of the standard library code, a comment, or
part of a docstring? (Comment markers and quotes are stripped, so prose must be told apart by
style.) A small BERT is built from a config (no pretrained weights, no downloaded tokenizer:
bytes are the tokens), trained for a minute, then ``greenprof.optimize`` makes its inference
cheaper while accuracy may fall by at most one point.

    python examples/bert_classifier.py
    greenprof optimize examples/bert_classifier.py:make_task
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _data  # noqa: E402
from _shared import run_example, threads, train  # noqa: E402

PACKAGES = [
    "asyncio", "email", "unittest", "xml", "multiprocessing", "logging", "importlib", "http",
    "concurrent", "json", "urllib", "collections", "tkinter",
]  # fmt: skip
SEQ_LEN = 64
TRAIN_STEPS = 300
BATCH = 32
#: Lines per workload call: the "traffic" split, unlabeled, never used for evaluation.
TRAFFIC = 256
TEST_PER_KIND = 1000


def build_model() -> torch.nn.Module:
    """A 4-layer, 256-wide BERT for the three kinds of line."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=_data.VOCAB_SIZE,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        max_position_embeddings=SEQ_LEN,
        num_labels=len(_data.KINDS),
        pad_token_id=_data.PAD,
    )
    return BertForSequenceClassification(config)


def make_task(steps: int = TRAIN_STEPS) -> dict:
    """Train the classifier and return ``model``, ``workload`` and ``evaluate`` for optimize."""
    torch.manual_seed(0)
    splits = _data.labelled_lines(PACKAGES, per_kind=4 * TEST_PER_KIND)
    encode = lambda texts: _data.encode(texts, SEQ_LEN, cls=True)  # noqa: E731
    train_ids, train_labels = encode(splits["train"].texts), torch.tensor(splits["train"].labels)
    test = splits["test"]
    test_ids, test_labels = encode(test.texts[: 3 * TEST_PER_KIND]), torch.tensor(test.labels)
    traffic = encode(splits["traffic"].texts[:TRAFFIC]).split(64)

    def batch(generator: torch.Generator) -> dict[str, torch.Tensor]:
        rows = torch.randint(0, len(train_ids), (BATCH,), generator=generator)
        ids = train_ids[rows]
        return {"input_ids": ids, "attention_mask": ids != _data.PAD, "labels": train_labels[rows]}

    model = build_model()
    print(f"training on {len(train_ids)} lines for {steps} steps")
    train(model, batch, steps=steps, lr=3e-4)

    def workload(model: torch.nn.Module) -> None:
        with threads(1), torch.inference_mode():
            for ids in traffic:
                model(input_ids=ids, attention_mask=ids != _data.PAD)

    def evaluate(model: torch.nn.Module) -> float:
        with torch.inference_mode():
            predicted = torch.cat(
                [
                    model(input_ids=ids, attention_mask=ids != _data.PAD).logits.argmax(-1)
                    for ids in test_ids.split(500)
                ]
            )
        return float((predicted == test_labels[: len(predicted)]).float().mean())

    return {
        "model": model,
        "workload": workload,
        "evaluate": evaluate,
        "max_metric_drop": 0.01,
        "samples_per_call": TRAFFIC,
    }


def main() -> None:
    run_example(
        make_task,
        description=__doc__.splitlines()[0],
        steps=TRAIN_STEPS,
        out="reports/optimize-bert",
        metric="accuracy",
        fmt=".4f",
    )


if __name__ == "__main__":
    main()
