"""Train a small text classifier on the Python standard library's own source.

A plain PyTorch training script that knows nothing about greenprof; profile it unmodified with

    greenprof run examples/train_mlp.py --epochs 2

Each line of stdlib source is labelled by Python's own tokenizer as code, comment or docstring
(markers stripped); an embedding-bag + MLP model learns to tell them apart from their bytes.
"""

from __future__ import annotations

import argparse

import torch
from _data import KINDS, VOCAB_SIZE, encode, labelled_lines
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

PACKAGES = ["json", "email", "http", "xml", "asyncio", "unittest"]
LINES_PER_KIND = 3000


class BytesMLP(nn.Module):
    """Mean of byte embeddings, then a two-layer MLP."""

    def __init__(self, classes: int, width: int = 1024):
        super().__init__()
        self.embed = nn.EmbeddingBag(VOCAB_SIZE, 128, mode="mean", padding_idx=0)
        self.mlp = nn.Sequential(
            nn.Linear(128, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, classes),
        )

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.embed(ids))


def loaders(batch_size: int, workers: int) -> tuple[DataLoader, DataLoader]:
    data = labelled_lines(PACKAGES, per_kind=LINES_PER_KIND)

    def dataset(split: str) -> TensorDataset:
        texts = data[split]
        return TensorDataset(encode(texts.texts, 128, cls=False), torch.tensor(texts.labels))

    train = DataLoader(dataset("train"), batch_size=batch_size, shuffle=True, num_workers=workers)
    test = DataLoader(dataset("test"), batch_size=256)
    return train, test


def accuracy(model: nn.Module, test: DataLoader) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for ids, labels in test:
            correct += int((model(ids).argmax(-1) == labels).sum())
            total += len(labels)
    model.train()
    return correct / max(total, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    args = parser.parse_args()
    torch.manual_seed(0)
    train, test = loaders(args.batch_size, args.workers)
    model = BytesMLP(len(KINDS))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(1, args.epochs + 1):
        for ids, labels in train:
            loss = loss_fn(model(ids), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        print(f"epoch {epoch}: loss {loss.item():.3f}, test accuracy {accuracy(model, test):.1%}")


if __name__ == "__main__":
    main()
