"""``greenprof.profile()``: sensors + sampler + hooks + timeline + attribution -> Session."""

from __future__ import annotations

import datetime as _dt
import logging
import platform
import socket
import sys
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd

from greenprof import __version__
from greenprof.attribution import TIME_SPLIT, Attribution, SensorSeries, attribute
from greenprof.clock import now_ns
from greenprof.errors import ConfigError, ProfilerError
from greenprof.hooks import HookRecorder, KeyInfo
from greenprof.sampler import Sampler
from greenprof.sensors import Sensor, detect
from greenprof.sensors.ranks import current_cuda_device, local_rank, owned_sensors
from greenprof.session import LAYER_COLUMNS, OUTSIDE_MODULE, Session
from greenprof.timeline import OUTSIDE_KEY, PHASE_NAMES, Timeline, TimeTable
from greenprof.windows import union_of_gaps, update_gaps

logger = logging.getLogger(__name__)

#: Drain hook events into the timeline once this many are waiting (bounds memory per step).
DRAIN_EVENTS = 20_000
#: At most this many "layer not resolved" warnings are listed one by one.
MAX_RESOLUTION_WARNINGS = 20


class profile:  # noqa: N801 - used as a function: `with greenprof.profile() as prof:`
    """Profile the energy of everything run inside the ``with`` block, per layer.

    Args:
        sensors: ``None`` to auto-detect (``greenprof.sensors.detect``), a list of sensor kind
            names (``"nvml"``, ``"rapl"``, ``"estimate"``), or a list of :class:`Sensor` objects
            to use exactly those.
        interval_s: sampling interval of the sensors, seconds.
        rated_cpu_power_w: rated CPU power for the CPU estimate (when it is used).
        trace_steps: steps whose individual spans are kept for the timeline view and trace export.
        meta: extra facts stored in ``session.meta`` (e.g. the command that was run).
        bootstrap: bootstrap replicates for the uncertainty of each figure.

    Example:
        >>> import greenprof, torch
        >>> model = torch.nn.Linear(8, 2)
        >>> with greenprof.profile() as prof:  # doctest: +SKIP
        ...     model(torch.randn(4, 8)).sum().backward()
        >>> prof.session.layers()  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        sensors: Sequence[Sensor | str] | None = None,
        interval_s: float = 0.01,
        rated_cpu_power_w: float | None = None,
        trace_steps: int = 20,
        meta: dict[str, Any] | None = None,
        bootstrap: int = 100,
    ) -> None:
        if not interval_s > 0:
            raise ConfigError(f"interval_s must be positive, got {interval_s!r}")
        self.interval_s = float(interval_s)
        self._sensor_spec = sensors
        self.rated_cpu_power_w = rated_cpu_power_w
        self.trace_steps = trace_steps
        self.extra_meta = dict(meta or {})
        self.bootstrap = bootstrap
        self.session: Session | None = None
        self.sensors: list[Sensor] = []
        self.time_table: TimeTable | None = None
        self.sensor_series: list[SensorSeries] = []
        self._recorder: HookRecorder | None = None
        self._sampler: Sampler | None = None
        self._timeline: Timeline | None = None
        self._started_at = ""

    # ------------------------------------------------------------ context
    def __enter__(self) -> profile:
        self.sensors = _resolve_sensors(self._sensor_spec, self.rated_cpu_power_w)
        recorder = HookRecorder()
        recorder.install()  # raises first when already profiling: nothing to clean up then
        try:
            self._sampler = Sampler(self.sensors, interval_s=self.interval_s)
            self._sampler.start()
        except BaseException:
            recorder.remove()
            raise
        self._started_at = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        self._timeline = Timeline(
            now_ns(),
            int(self.interval_s * 1e9) // 10,
            trace_steps=self.trace_steps,
            gaps=self._known_gaps,
        )
        recorder.step_callback = self._maybe_drain
        self._recorder = recorder
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._recorder is not None and self._sampler is not None
        assert self._timeline is not None
        self._recorder.remove()
        _wait_for_devices()
        t_end_ns = now_ns()
        self._sampler.stop()
        meta = dict(self.extra_meta)
        if exc_type is not None:
            meta.setdefault("interrupted", issubclass(exc_type, KeyboardInterrupt))
            meta.setdefault("error", f"{exc_type.__name__}: {exc}")
        try:
            self._timeline.feed(self._recorder.drain(final=True))
            table = self._timeline.finish(t_end_ns)
            self.session = self._build_session(table, meta)
        except Exception:
            if exc_type is None:
                raise
            # Never hide the user's exception behind ours; keep what the sensors measured.
            logger.exception("greenprof: could not attribute energy; saving sensor totals only")
            self.session = _fallback_session(self._sampler, meta)
        finally:
            for sensor in self.sensors:
                _close_quietly(sensor)

    def layers_for(self, result: Attribution) -> pd.DataFrame:
        """Per-layer table of another attribution of this profile's recording.

        For re-analysis: ``attribute(prof.time_table, prof.sensor_series, method=...)`` gives
        the result; this names its columns as :meth:`Session.layers` does.
        """
        if self.time_table is None:
            raise ProfilerError("the profile has not finished yet")
        return _layers_frame(self.time_table, result, self.column_names())

    def column_names(self) -> list[tuple[str, str]]:
        """``(module, type)`` of each column of :attr:`time_table`."""
        if self.time_table is None or self._recorder is None:
            raise ProfilerError("the profile has not finished yet")
        return _column_names(self.time_table, self._recorder.keys)

    def _known_gaps(self) -> tuple[np.ndarray, np.ndarray]:
        """Every sensor's update gaps so far, merged: where the timeline must keep fine cells."""
        assert self._sampler is not None
        series = self._sampler.series().values()
        return union_of_gaps([update_gaps(t_ns, energy_j)[:2] for t_ns, energy_j in series])

    def _maybe_drain(self) -> None:
        recorder, timeline = self._recorder, self._timeline
        if recorder is not None and timeline is not None and len(recorder.events) > DRAIN_EVENTS:
            timeline.feed(recorder.drain())

    # ------------------------------------------------------------ session
    def _build_session(self, table: TimeTable, meta: dict[str, Any]) -> Session:
        assert self._sampler is not None and self._recorder is not None
        series = _sensor_series(self.sensors, self._sampler)
        # Kept for re-analysis (e.g. greenprof.attribution.attribute with another method).
        self.time_table, self.sensor_series = table, series
        names = _column_names(table, self._recorder.keys)
        result = attribute(
            table, series, bootstrap=self.bootstrap, classes=column_classes(table, names)
        )
        layers = _layers_frame(table, result, names)
        meta = {**_run_facts(), **meta}
        meta.update(
            started_at=self._started_at,
            duration_s=(table.t_end_ns - table.t_start_ns) * 1e-9,
            interval_s=self.interval_s,
            steps=table.steps or None,
            sensors=_sensor_facts(result, self._sampler.failures),
            total_energy_j=result.total_j,
            total_energy_lo_j=result.total_lo_j,
            total_energy_hi_j=result.total_hi_j,
            inconsistencies=table.inconsistencies + self._recorder.inconsistencies,
            warnings=_warnings(self, table, result, names),
        )
        if table.steps:
            meta["energy_per_step_j"] = result.total_j / table.steps
        return Session(
            meta,
            layers,
            _samples_frame(series, table.t_start_ns),
            _spans_frame(table, names),
        )


# ---------------------------------------------------------------------------- helpers
def _resolve_sensors(
    spec: Sequence[Sensor | str] | None, rated_cpu_power_w: float | None
) -> list[Sensor]:
    if spec is None:
        return owned_sensors(
            detect(rated_cpu_power_w=rated_cpu_power_w),
            rank=local_rank(),
            cuda_device=current_cuda_device(),
        )
    items = list(spec)
    if all(isinstance(s, str) for s in items):
        return detect(names=[str(s) for s in items], rated_cpu_power_w=rated_cpu_power_w)
    bad = [s for s in items if not isinstance(s, Sensor)]
    if bad:
        raise ConfigError(f"sensors must be Sensor objects or sensor kind names, got {bad[0]!r}")
    return items  # type: ignore[return-value]


def _wait_for_devices() -> None:
    """Let queued GPU work finish, once, so its joules land inside the profile."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _close_quietly(sensor: Sensor) -> None:
    try:
        sensor.close()
    except Exception:
        logger.debug("greenprof: closing %s failed", sensor.name, exc_info=True)


def _sensor_series(sensors: list[Sensor], sampler: Sampler) -> list[SensorSeries]:
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


def _column_names(table: TimeTable, keys: list[KeyInfo]) -> list[tuple[str, str]]:
    """(module, type) per column; names are prefixed by their root when several roots ran."""
    used_roots = []
    for key, _phase in table.columns:
        if key != OUTSIDE_KEY and not keys[key].is_optimizer and keys[key].root not in used_roots:
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
        if key == OUTSIDE_KEY:
            names.append((OUTSIDE_MODULE, ""))
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


def _layers_frame(
    table: TimeTable, result: Attribution, names: list[tuple[str, str]]
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "module": [n[0] for n in names],
            "type": [n[1] for n in names],
            "phase": [PHASE_NAMES[p] for _k, p in table.columns],
            "calls": table.calls,
            "time_s": table.self_ns * 1e-9,
            "energy_j": result.energy_j,
            "energy_lo_j": result.energy_lo_j,
            "energy_hi_j": result.energy_hi_j,
        }
    )
    # Two columns can share a name (e.g. a module seen under two roots): one row per name.
    frame = frame.groupby(["module", "type", "phase"], as_index=False, sort=False).sum()
    frame = frame.sort_values(["energy_j", "time_s"], ascending=False, kind="stable")
    return frame[LAYER_COLUMNS].reset_index(drop=True)


def _samples_frame(series: list[SensorSeries], t_start_ns: int) -> pd.DataFrame:
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


def _spans_frame(table: TimeTable, names: list[tuple[str, str]]) -> pd.DataFrame:
    if not table.trace:
        return pd.DataFrame()
    trace = np.asarray(table.trace, np.int64)
    return pd.DataFrame(
        {
            "module": [names[c][0] for c in trace[:, 0]],
            "phase": [PHASE_NAMES[table.columns[c][1]] for c in trace[:, 0]],
            "t0_s": (trace[:, 1] - table.t_start_ns) * 1e-9,
            "t1_s": (trace[:, 2] - table.t_start_ns) * 1e-9,
            "depth": trace[:, 3],
        }
    )


def _sensor_facts(result: Attribution, failures: dict[str, str]) -> list[dict[str, Any]]:
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


def _run_facts() -> dict[str, Any]:
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


def _warnings(
    prof: profile, table: TimeTable, result: Attribution, names: list[tuple[str, str]]
) -> list[str]:
    assert prof._sampler is not None
    out = list(prof._sampler.warnings)  # includes one line per failed sensor
    estimated = [r.name for r in result.sensors if not r.measured]
    if estimated:
        out.append(
            "ESTIMATED energy from " + ", ".join(estimated) + ": no hardware counter was readable; "
            "figures come from CPU utilisation x rated power (see `greenprof sensors`)"
        )
    busy_columns = int((table.self_ns > 0).sum())
    split = [r.name for r in result.sensors if r.method == TIME_SPLIT and r.total_j > 0]
    if busy_columns < 2:
        split = []  # one row: nothing to split
    if split:
        out.append(
            "per-layer joules of " + ", ".join(split) + " assume every layer draws the same power "
            "(time split): the sensor's windows did not show layers drawing different power. "
            "Layers far shorter than the sensor's update period look alike to it; longer steps, "
            "a shorter --interval-ms or a longer run can reveal differences"
        )
    if result.total_j <= 0:
        out.append(
            "no energy was recorded: the profile was shorter than the sensors' update period"
        )
    inconsistencies = table.inconsistencies + (
        prof._recorder.inconsistencies if prof._recorder else 0
    )
    if inconsistencies:
        out.append(f"{inconsistencies} hook events did not match (e.g. a forward that raised)")
    return out + resolution_warnings(table, result, names)


def resolution_warnings(
    table: TimeTable, result: Attribution, names: list[tuple[str, str]]
) -> list[str]:
    """One line per layer the recorded steps could not resolve, saying what would."""
    out = []
    steps = table.steps or 1
    for column, rel, needed in result.unresolved[:MAX_RESOLUTION_WARNINGS]:
        module = names[column][0] or "(root)"
        phase = PHASE_NAMES[table.columns[column][1]]
        if needed:
            advice = f"about {needed} steps would resolve it to ±20%"
        else:
            advice = (
                "the sensor's windows cannot tell its power from its neighbours'; more steps "
                "alike will not help, longer steps or a faster-updating sensor would"
            )
        out.append(f"{module} ({phase}): ±{rel:.0%} after {steps} steps is noise-level; {advice}")
    extra = len(result.unresolved) - MAX_RESOLUTION_WARNINGS
    if extra > 0:
        out.append(f"... and {extra} more layers not resolved to ±20%")
    return out


def _fallback_session(sampler: Sampler, meta: dict[str, Any]) -> Session:
    """Sensor totals only, for when attribution itself failed while the user's code raised."""
    totals = {
        name: float(e[-1] - e[0]) if len(e) else 0.0 for name, (_t, e) in sampler.series().items()
    }
    total = sum(totals.values())
    layers = pd.DataFrame(
        [[OUTSIDE_MODULE, "", "other", 0, 0.0, total, total, total]], columns=LAYER_COLUMNS
    )
    meta = {**_run_facts(), **meta, "total_energy_j": total}
    meta["warnings"] = ["attribution failed; only sensor totals were saved"]
    return Session(meta, layers)
