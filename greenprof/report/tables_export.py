"""A session's tables as data files, for pandas, DuckDB, spreadsheets and the like."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from greenprof.errors import ConfigError
from greenprof.session import Session

#: Tables written, by file stem.
TABLES = ("layers", "samples", "spans")


def _tables(session: Session, by_rank: bool) -> dict[str, pd.DataFrame]:
    layers = session.layers(by_rank=by_rank)
    return {"layers": layers, "samples": session.samples(), "spans": session.spans()}


def write_csv(session: Session, path: str | Path, *, by_rank: bool = False) -> Path:
    """Write ``layers.csv``, ``samples.csv`` and ``spans.csv`` into the folder ``path``.

    With ``by_rank``, the layers table has one row per rank, module, phase and region, and a
    ``rank`` column first (``Session.layers(by_rank=True)``).
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in _tables(session, by_rank).items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


def write_parquet(session: Session, path: str | Path, *, by_rank: bool = False) -> Path:
    """Write ``layers.parquet``, ``samples.parquet`` and ``spans.parquet`` into the folder ``path``.

    ``by_rank`` as for :func:`write_csv`.

    Raises:
        ConfigError: pyarrow is not installed.
    """
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ConfigError(
            "Parquet export needs pyarrow: pip install 'greenprof[export]' (or use --format csv)"
        ) from None
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in _tables(session, by_rank).items():
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    return folder
