"""Reading back what wandb wrote for an offline run: its records file, parsed."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import wandb
from wandb.proto import wandb_internal_pb2

_BLOCK = 32 * 1024  # the records file is a leveldb-style log of 32 KiB blocks
_HEADER = 7  # checksum (4), length (2), type (1)


def records(run_dir: Path) -> list[wandb_internal_pb2.Record]:
    """Every record of an offline run, parsed from its ``run-<id>.wandb`` file."""
    wandb.teardown()  # wandb's service writes the file behind the run's back: wait for it
    data = next(run_dir.glob("run-*.wandb")).read_bytes()
    assert data[:4] == b":W&B"
    out, pos, pending = [], 7, b""
    while pos + _HEADER <= len(data):
        if _BLOCK - pos % _BLOCK < _HEADER:  # block trailer: padding
            pos += _BLOCK - pos % _BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        pos += _HEADER
        pending += data[pos : pos + length]
        pos += length
        if kind in (1, 4) and pending:  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    assert out and out[-1].WhichOneof("record_type") == "exit", "the run was not finished"
    return out


def logged(run_dir: Path) -> tuple[dict[str, object], dict[str, object]]:
    """``(history row keys -> value, summary keys -> value)`` of an offline run."""
    history: dict[str, object] = {}
    summary: dict[str, object] = {}
    for record in records(run_dir):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items, into = record.history.item, history
        elif kind == "summary":
            items, into = record.summary.update, summary
        else:
            continue
        for item in items:
            into["/".join(item.nested_key) or item.key] = json.loads(item.value_json)
    return history, summary


def only_run(root: Path) -> Path:
    (run,) = (root / "wandb").glob("offline-run-*")
    return run
