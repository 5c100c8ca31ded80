"""The session's tables and facts, built from a finished recording (pure functions)."""

from __future__ import annotations

import platform
import socket
import sys
from typing import Any

import numpy as np
import pandas as pd

from greenprof.attribute.fit import POWER_FIT, Attribution, SensorSeries
from greenprof.attribute.generation import generation_rows
from greenprof.measure.sampler import Sampler
from greenprof.schema import (
    OUTSIDE_KEY,
    OUTSIDE_MODULE,
    PHASES,
    STARTUP_KEY,
    STARTUP_MODULE,
    TimeTable,
)
from greenprof.sensors import Sensor
from greenprof.session import LAYER_COLUMNS, LAYER_EXTRA_COLUMNS, Session
from greenprof.track.events import AUTO_EVAL
from greenprof.track.generation import DECODE, PREFILL, GenerationWatch
from greenprof.track.hooks import KeyInfo
from greenprof.track.regions import region_name
from greenprof.version import __version__


def column_names(table: TimeTable, keys: list[KeyInfo]) -> list[tuple[str, str]]:
    """(module, type) per column; names are prefixed by their root when several roots ran."""
    used_roots = []
    for key, _phase in table.columns:
        if key >= 0 and not keys[key].is_optimizer and keys[key].root not in used_roots:
            used_roots.append(keys[key].root)
    prefixes: dict[int, str] = {}
    if len(used_roots) > 1:
        seen: dict[str, int] = {}
        for root in used_roots:
            type_name = keys[root].type_name
            seen[type_name] = seen.get(type_name, 0) + 1
            prefixes[root] = type_name if seen[type_name] == 1 else f"{type_name}#{seen[type_name]}"
    names = []
    for key, _phase in table.columns:
        if key in (OUTSIDE_KEY, STARTUP_KEY):
            names.append((OUTSIDE_MODULE if key == OUTSIDE_KEY else STARTUP_MODULE, ""))
            continue
        info = keys[key]
        prefix = prefixes.get(info.root, "")
        name = f"{prefix}.{info.name}" if prefix and info.name else (prefix or info.name)
        names.append((name, info.type_name))
    return names


def column_classes(table: TimeTable, names: list[tuple[str, str]]) -> np.ndarray:
    """A class per timeline column: its layer type and phase (layers of a kind draw alike)."""
    labels = [
        f"{type_name}/{phase}"
        for (_name, type_name), (_key, phase) in zip(names, table.columns, strict=True)
    ]
    _, classes = np.unique(np.asarray(labels, dtype=object), return_inverse=True)
    return classes


def passive_method(result: Attribution) -> str:
    """How rows were measured without replays: ``power fit`` or ``time split``."""
    return "power fit" if any(r.method == POWER_FIT for r in result.sensors) else "time split"


def column_regions(table: TimeTable) -> list[str]:
    """Region name per column; the automatic ``eval`` only counts in a run that also trains."""
    trains = any(phase in (1, 2) for _key, phase in table.columns)  # backward or optimizer
    names = []
    for column in range(len(table.columns)):
        rid = table.region_of(column)
        names.append("" if rid == AUTO_EVAL and not trains else region_name(rid))
    return names


def layers_frame(
    table: TimeTable,
    result: Attribution,
    names: list[tuple[str, str]],
    methods: list[str] | None = None,
) -> pd.DataFrame:
    """One row per (module, type, phase, region), highest energy first, with power and method."""
    frame = pd.DataFrame(
        {
            "module": [n[0] for n in names],
            "type": [n[1] for n in names],
            "phase": [PHASES[p] for _k, p in table.columns],
            "calls": table.calls,
            "time_s": table.self_ns * 1e-9,
            "energy_j": result.energy_j,
            "energy_lo_j": result.energy_lo_j,
            "energy_hi_j": result.energy_hi_j,
            "method": methods if methods is not None else [passive_method(result)] * len(names),
            "region": column_regions(table),
        }
    )
    # Two columns can share a name (e.g. a module seen under two roots): one row per name.
    summed = {c: "sum" for c in LAYER_COLUMNS[3:]}
    frame = frame.groupby(["module", "type", "phase", "region"], as_index=False, sort=False).agg(
        {**summed, "method": "first"}
    )
    time_s = frame["time_s"].to_numpy()
    for column, energy in (
        ("power_w", "energy_j"),
        ("power_lo_w", "energy_lo_j"),
        ("power_hi_w", "energy_hi_j"),
    ):
        frame[column] = np.divide(
            frame[energy].to_numpy(), time_s, out=np.zeros(len(frame)), where=time_s > 0
        )
    frame = frame.sort_values(["energy_j", "time_s"], ascending=False, kind="stable")
    return frame[[*LAYER_COLUMNS, *LAYER_EXTRA_COLUMNS]].reset_index(drop=True)


def samples_frame(series: list[SensorSeries], t_start_ns: int) -> pd.DataFrame:
    """Every sensor's samples, times from the profile's start, joules from its first sample."""
    frames = [
        pd.DataFrame(
            {
                "sensor": s.name,
                "t_s": (s.t_ns.astype(np.float64) - t_start_ns) * 1e-9,
                "energy_j": s.energy_j - (s.energy_j[0] if len(s.energy_j) else 0.0),
            }
        )
        for s in series
        if len(s.t_ns)
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def spans_frame(table: TimeTable, names: list[tuple[str, str]]) -> pd.DataFrame:
    """The recorded spans (the first steps), named, times from the profile's start."""
    if not table.trace:
        return pd.DataFrame()
    trace = np.asarray(table.trace, np.int64)
    return pd.DataFrame(
        {
            "module": [names[c][0] for c in trace[:, 0]],
            "phase": [PHASES[table.columns[c][1]] for c in trace[:, 0]],
            "t0_s": (trace[:, 1] - table.t_start_ns) * 1e-9,
            "t1_s": (trace[:, 2] - table.t_start_ns) * 1e-9,
            "depth": trace[:, 3],
        }
    )


def sensor_facts(result: Attribution, failures: dict[str, str]) -> list[dict[str, Any]]:
    """What the session says of each sensor: kind, device, measured or not, totals, method."""
    return [
        {
            "name": r.name,
            "device": r.device,
            "measured": r.measured,
            "energy_j": r.total_j,
            "energy_lo_j": r.total_lo_j,
            "energy_hi_j": r.total_hi_j,
            "method": r.method,
            "windows": r.windows,
            "failed": failures.get(r.name),
        }
        for r in result.sensors
    ]


def run_facts() -> dict[str, Any]:
    """Versions, host and command of this process."""
    import torch

    return {
        "greenprof_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        # Kernel version without the distribution's build suffix: enough to explain RAPL access.
        "platform": f"{platform.system()} {platform.release().split('-')[0]} {platform.machine()}",
        "host": socket.gethostname(),
        "command": " ".join(sys.argv),
    }


def fallback_session(
    series: list[SensorSeries], meta: dict[str, Any], t_start_ns: int, *, why: str
) -> Session:
    """Sensor totals and samples only, for when attribution failed or was interrupted.

    Args:
        series: what each sensor recorded.
        meta: the run's facts so far.
        t_start_ns: the profile's start, the origin of the samples' times.
        why: what stopped the attribution, for the session's warning.
    """
    sensors = [
        {
            "name": s.name,
            "device": s.device,
            "measured": s.measured,
            "energy_j": float(s.energy_j[-1] - s.energy_j[0]) if len(s.energy_j) else 0.0,
            "failed": s.failed,
        }
        for s in series
    ]
    total = sum(s["energy_j"] for s in sensors)
    layers = pd.DataFrame(
        [[OUTSIDE_MODULE, "", "other", 0, 0.0, total, total, total]], columns=LAYER_COLUMNS
    )
    meta = {**run_facts(), **meta, "total_energy_j": total, "sensors": sensors}
    meta["warnings"] = [f"{why}; only sensor totals were saved, not the per-layer split"]
    return Session(meta, layers, samples_frame(series, t_start_ns))


def sensor_series(sensors: list[Sensor], sampler: Sampler) -> list[SensorSeries]:
    """What each sensor recorded, as attribution reads it (empty where nothing came)."""
    recorded = sampler.series()
    failures = sampler.failures
    out = []
    for sensor in sensors:
        t_ns, energy_j = recorded.get(sensor.name, (np.zeros(0, np.int64), np.zeros(0)))
        out.append(
            SensorSeries(
                sensor.name,
                sensor.device,
                bool(sensor.measured),
                np.asarray(t_ns),
                np.asarray(energy_j),
                failures.get(sensor.name),
            )
        )
    return out


def generation_facts(layers: pd.DataFrame, watch: GenerationWatch) -> dict[str, Any]:
    """``meta["generation"]`` rows (joules per generate call / counted region), or why none."""
    rows = generation_rows(layers, watch.calls, watch.tokens, prefill=PREFILL, decode=DECODE)
    if rows:
        return {"generation": rows}
    why = (
        "no generate() call and no greenprof.tokens() inside the profile"
        if watch.hooked
        else "transformers was not imported when the profile started, and no greenprof.tokens()"
    )
    return {"generation": [], "generation_note": why}
