"""Real text that ships with Python: the standard library's own source, read from disk.

Nothing is downloaded and no label is invented: a line's label is what Python's own parser says
it is (code, a comment, or part of a docstring). Whole files go to the training, traffic (the
unlabeled inference workload) or test split, so no split sees lines of another split's files.
"""

from __future__ import annotations

import ast
import io
import random
import sysconfig
import tokenize
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

PAD, CLS = 0, 1
#: Token ids: 0 padding, 1 [CLS], then the 256 byte values.
VOCAB_SIZE = 258


def stdlib_root() -> Path:
    """Directory of the running Python's standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def package_files(package: str) -> list[Path]:
    """The package's source files, sorted, without its test suites."""
    files = sorted((stdlib_root() / package).rglob("*.py"))
    return [f for f in files if not {"test", "tests", "idle_test"} & set(f.parts)]


#: Kinds of source line, the labels of the classifier.
KINDS = ("code", "comment", "docstring")
#: Lines shorter than this carry too little to classify (``else:``, ``)``, ``pass``).
MIN_LINE_BYTES = 12


def line_kinds(path: Path) -> list[tuple[bytes, int]]:
    """Each non-trivial line of a source file with its kind (index into :data:`KINDS`).

    Comment markers and docstring quotes are stripped, so the model has to tell prose in a
    comment from prose in a docstring by its style, not by a ``#`` or ``\"\"\"``.
    """
    source = path.read_text(encoding="utf-8")
    docstring_lines = _docstring_lines(source)
    comment_lines = _comment_lines(source)
    out = []
    for number, raw in enumerate(source.splitlines(), start=1):
        line = raw.strip()
        if number in comment_lines:
            kind, text = 1, line.lstrip("#").strip()
        elif number in docstring_lines:
            kind, text = 2, line.strip("\"'rbuRBU ").strip()
        else:
            kind, text = 0, line
        data = text.encode("utf-8")
        if len(data) >= MIN_LINE_BYTES:
            out.append((data, kind))
    return out


def _docstring_lines(source: str) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                lines.update(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    return lines


def _comment_lines(source: str) -> set[int]:
    """Lines that hold nothing but a comment."""
    lines = set()
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    for token in tokens:
        if token.type == tokenize.COMMENT and token.line.strip().startswith("#"):
            lines.add(token.start[0])
    return lines


def split_of(path: Path) -> str:
    """Which split a file belongs to, by a stable hash of its name: 3/5 train, 1/5 each other."""
    bucket = zlib.crc32(str(path.relative_to(stdlib_root())).encode()) % 5
    return "test" if bucket == 4 else "traffic" if bucket == 3 else "train"


@dataclass
class Texts:
    """Lines and their labels for one split."""

    texts: list[bytes]
    labels: list[int]


def labelled_lines(packages: list[str], per_kind: int, seed: int = 0) -> dict[str, Texts]:
    """Source lines of ``packages`` labelled code/comment/docstring, by split.

    Each split holds the same number of lines of each kind (at most ``per_kind`` in train and
    ``per_kind // 3`` in the others), drawn at random with ``seed``.
    """
    pools: dict[str, list[list[bytes]]] = {
        name: [[] for _ in KINDS] for name in ("train", "traffic", "test")
    }
    for package in packages:
        for path in package_files(package):
            for text, kind in line_kinds(path):
                pools[split_of(path)][kind].append(text)
    generator = random.Random(seed)
    out = {}
    for name, by_kind in pools.items():
        limit = per_kind if name == "train" else per_kind // 3
        count = min(limit, *(len(lines) for lines in by_kind))
        pairs = [(t, k) for k, lines in enumerate(by_kind) for t in generator.sample(lines, count)]
        generator.shuffle(pairs)
        out[name] = Texts([t for t, _ in pairs], [k for _, k in pairs])
    return out


def encode(texts: list[bytes], length: int, *, cls: bool) -> torch.Tensor:
    """Byte-level token ids, ``[CLS]`` first when ``cls``, padded with 0 to ``length``."""
    ids = torch.full((len(texts), length), PAD, dtype=torch.long)
    for row, text in enumerate(texts):
        tokens = ([CLS] if cls else []) + [b + 2 for b in text]
        tokens = tokens[:length]
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    return ids


def stream(packages: list[str]) -> bytes:
    """All source of ``packages`` as one byte string, files in sorted order."""
    return b"\n".join(path.read_bytes() for p in packages for path in package_files(p))
