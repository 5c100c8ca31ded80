"""Chrome / Perfetto trace export: the span trace as slices, each sensor's power as a counter.

The output follows the Trace Event Format (``"X"`` complete events, ``"C"`` counter events,
``"M"`` metadata), which ui.perfetto.dev and ``about:tracing`` open directly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from greenprof.report.power import power_w, sensor_series
from greenprof.report.tables import display_name, sensor_rows
from greenprof.session import Session

TRACE_FILE = "trace.json"

#: Most counter events per sensor: keeps an hour-long run's trace to a few megabytes.
MAX_COUNTER_POINTS = 20_000

_PID = 1
_SPANS_TID = 1
_US_PER_S = 1e6


def chrome_trace(session: Session) -> dict[str, Any]:
    """Return the trace of ``session`` as a Trace Event Format object.

    Spans become ``"X"`` events named after their module with the phase as category; each
    sensor's power (the derivative of its cumulative energy) becomes a ``"C"`` counter track
    whose name says whether it is measured or estimated.
    """
    command = str(session.meta.get("command") or "profile")
    events: list[dict[str, Any]] = [
        _metadata("process_name", {"name": f"greenprof: {command}"}),
        _metadata("thread_name", {"name": "modules"}, tid=_SPANS_TID),
    ]
    events += _span_events(session)
    events += _counter_events(session)
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "command": command,
            "started_at": str(session.meta.get("started_at", "")),
            "estimated": session.estimated,
        },
    }


def write_chrome_trace(session: Session, path: str | Path) -> Path:
    """Write :func:`chrome_trace` as JSON to ``path``; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as stream:
        json.dump(chrome_trace(session), stream, allow_nan=False, separators=(",", ":"))
    return target


def _metadata(name: str, args: dict[str, Any], tid: int = 0) -> dict[str, Any]:
    return {"name": name, "ph": "M", "pid": _PID, "tid": tid, "args": args}


def _span_events(session: Session) -> list[dict[str, Any]]:
    spans = session.spans()
    spans["dur_s"] = spans["t1_s"] - spans["t0_s"]
    # Containers before what they contain: viewers nest slices by start, then longest first.
    spans = spans.sort_values(["t0_s", "dur_s", "depth"], ascending=[True, False, True])
    return [
        {
            "name": display_name(row.module),
            "cat": row.phase,
            "ph": "X",
            "ts": round(row.t0_s * _US_PER_S, 3),
            "dur": round(max(row.dur_s, 0.0) * _US_PER_S, 3),
            "pid": _PID,
            "tid": _SPANS_TID,
            "args": {"module": row.module, "depth": int(row.depth)},
        }
        for row in spans.itertuples()
    ]


def _counter_events(session: Session) -> list[dict[str, Any]]:
    labels = {str(s.get("name")): s["label"].lower() for s in sensor_rows(session)}
    events = []
    for sensor, (t_s, energy_j) in sensor_series(session.samples()).items():
        name = f"{sensor} power ({labels.get(sensor, 'estimated')})"
        edges_s, watts = power_w(t_s, energy_j, max_points=MAX_COUNTER_POINTS)
        # A counter holds its value until the next event: each bin's mean starts at its left edge.
        events += [
            {
                "name": name,
                "ph": "C",
                "ts": round(float(t) * _US_PER_S, 3),
                "pid": _PID,
                "args": {"W": float(w)},
            }
            for t, w in zip(edges_s[:-1], watts, strict=True)
        ]
    return events
