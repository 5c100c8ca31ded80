"""Sessions built by hand for renderer tests: no torch, no hardware."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import pytest

from greenprof.session import LAYER_COLUMNS, OUTSIDE_MODULE, Session
from greenprof.testing.synthetic import synthetic_session

LayerRow = tuple[str, str, str, int, float, float, float, float]


def hand_session(
    rows: Sequence[LayerRow] | None = None,
    *,
    measured: bool = True,
    steps: int | None = 10,
    **meta: object,
) -> Session:
    """Return a small session from ``(module, type, phase, calls, time_s, j, lo_j, hi_j)`` rows."""
    rows = list(rows) if rows is not None else default_rows()
    layers = pd.DataFrame(rows, columns=LAYER_COLUMNS)
    total = float(layers["energy_j"].sum())
    samples = pd.DataFrame(
        {"sensor": "s0", "t_s": [0.0, 0.5, 1.0, 1.5, 2.0], "energy_j": [0, 0.25, 0.5, 0.75, 1.0]}
    )
    samples["energy_j"] *= total
    spans = pd.DataFrame(
        [("", "forward", 0.1, 0.3, 0), ("fc", "forward", 0.15, 0.25, 1)],
        columns=["module", "phase", "t0_s", "t1_s", "depth"],
    )
    base = {
        "command": "greenprof run train.py",
        "duration_s": 2.0,
        "interval_s": 0.01,
        "steps": steps,
        "sensors": [
            {
                "name": "s0",
                "device": "cpu",
                "measured": measured,
                "energy_j": total,
                "energy_lo_j": total * 0.9,
                "energy_hi_j": total * 1.1,
                "failed": None,
                "method": "power-fit",
            }
        ],
        "total_energy_j": total,
        "total_energy_lo_j": total * 0.9,
        "total_energy_hi_j": total * 1.1,
        "warnings": [],
    }
    base.update(meta)
    return Session(base, layers, samples, spans)


def default_rows() -> list[LayerRow]:
    return [
        ("", "Net", "forward", 10, 0.1, 2.0, 1.8, 2.2),
        ("fc", "Linear", "forward", 10, 0.4, 6.0, 5.5, 6.5),
        ("fc", "Linear", "backward", 10, 0.6, 9.0, 8.0, 10.0),
        ("act", "ReLU", "forward", 10, 0.01, 0.1, 0.0, 0.3),
        ("optimizer:SGD", "SGD", "optimizer", 10, 0.05, 0.9, 0.7, 1.1),
        (OUTSIDE_MODULE, "", "other", 0, 0.84, 2.0, 1.5, 2.5),
    ]


@pytest.fixture
def make_session() -> Callable[..., Session]:
    return hand_session


@pytest.fixture(scope="session")
def synthetic() -> Session:
    return synthetic_session(duration_s=20.0, n_blocks=3)


@pytest.fixture(scope="session")
def synthetic_estimated() -> Session:
    return synthetic_session(duration_s=20.0, n_blocks=3, estimated=True)
