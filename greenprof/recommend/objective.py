"""What the optimize loop makes smaller: joules per workload call, or per new token.

A workload that generates text (``generate()`` calls, or tokens counted with
``greenprof.tokens(n)``) is judged by its joules per new token: the workload call's joules,
prefill included, over the new tokens it made. A change that makes a model stop earlier then
does not pass for a saving merely because it wrote less.
"""

from __future__ import annotations

import dataclasses
import math

from greenprof.errors import ConfigError
from greenprof.recommend.measure import Measurement

#: Accepted values of ``objective``; ``auto`` picks per token when the baseline generated text.
OBJECTIVES = ("auto", "j-per-call", "j-per-token")
#: What one figure is per, in words, by objective.
PER = {"j-per-call": "workload call", "j-per-token": "new token"}


def check_objective(name: str) -> str:
    """Return ``name`` if it is one of :data:`OBJECTIVES`.

    Raises:
        ConfigError: for any other name.
    """
    if name not in OBJECTIVES:
        raise ConfigError(f"objective {name!r}: choose one of {', '.join(OBJECTIVES)}")
    return name


def choose_objective(name: str, baseline: Measurement) -> str:
    """``j-per-call`` or ``j-per-token`` for ``name`` given the original model's measurement.

    Raises:
        ConfigError: for an unknown name, or ``j-per-token`` when the workload generated no
            new tokens (nothing to divide by).
    """
    if check_objective(name) == "auto":
        return "j-per-token" if baseline.new_tokens > 0 else "j-per-call"
    if name == "j-per-token" and baseline.new_tokens <= 0:
        raise ConfigError(
            "objective j-per-token: the workload generated no new tokens (no generate() call of "
            "a transformers model, no greenprof.tokens(n)); use j-per-call or make the workload "
            "generate"
        )
    return name


def per_objective(measurement: Measurement, objective: str) -> Measurement:
    """``measurement`` with its joules per call turned into joules per ``objective``.

    Per token, every figure is divided by the new tokens per call; NaN when there were none.
    """
    if objective == "j-per-call":
        return measurement
    tokens = measurement.new_tokens

    def per(value: float) -> float:
        return value / tokens if tokens > 0 else math.nan

    return dataclasses.replace(
        measurement,
        energy_j=per(measurement.energy_j),
        energy_lo_j=per(measurement.energy_lo_j),
        energy_hi_j=per(measurement.energy_hi_j),
        repeat_energy_j=[per(v) for v in measurement.repeat_energy_j],
        mean_energy_j=per(measurement.mean_energy_j),
    )


__all__ = ["OBJECTIVES", "PER", "check_objective", "choose_objective", "per_objective"]
