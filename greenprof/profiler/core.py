"""``greenprof.profile()``: sensors + sampler + hooks + timeline + attribution -> Session."""

from __future__ import annotations

import copy
import datetime as _dt
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd

from greenprof.attribute.calibrated import calibrated_attribution
from greenprof.attribute.fit import Attribution, SensorSeries, attribute
from greenprof.attribute.windows import union_of_gaps, update_gaps
from greenprof.clock import now_ns
from greenprof.errors import ConfigError, ProfilerError, Terminated
from greenprof.measure.sampler import Sampler, check_interval_s
from greenprof.profiler import calibration, frames, outputs, resources
from greenprof.profiler.advice import calibration_warnings, session_warnings, tracking_warnings
from greenprof.profiler.calibration import CalibrationRun
from greenprof.profiler.steps import LoadProbe, StepMarks, step_tables
from greenprof.schema import TimeTable
from greenprof.sensors import Sensor
from greenprof.sensors.ranks import Ownership, current_cuda_device, resolve_sensors
from greenprof.session import Session
from greenprof.track.capture import CallCapture
from greenprof.track.generation import GenerationWatch
from greenprof.track.hooks import HookRecorder
from greenprof.track.startup import StartupTimeline
from greenprof.track.timeline import Timeline

logger = logging.getLogger(__name__)

#: Drain hook events into the timeline at a step boundary once this many are waiting: memory per
#: step stays bounded, and a drain of training steps, taken in bulk, costs 1-2 ms on a small CPU
#: (per step, half of what drains of 2,048 events cost: numpy's fixed cost is paid half as often).
DRAIN_EVENTS = 4096


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
        calibrate: after the block, replay each captured layer alone to measure its power (on by
            default; it runs only where a sensor updates more slowly than the layers it must
            split). Replays leave the user's state as it was and are charged to no row; see
            ``session.meta["calibration"]``.
        calibrate_s: the replays' time budget, seconds [default: the larger of 10 s and 10 % of
            the profiled time]. Given explicitly, calibration runs whatever the sensors' speed.
        tensorboard: a TensorBoard log folder: when the profile ends, its energy figures are
            written there as scalars (``greenprof.report.tensorboard``); a failure to write them
            is logged and loses nothing of the session.
        wandb: log the same figures to Weights & Biases when the profile ends
            (``greenprof.report.wandb``): ``True`` for the active run (or a new one in project
            ``$WANDB_PROJECT``), a project name, or a wandb run object. Needs ``wandb``.

    As a decorator, ``@greenprof.profile()`` profiles every call of the function and returns
    its result; the latest call's session is the wrapper's ``session`` attribute (and the
    profile's, ``wrapper.profile.session``), kept also when the function raised.

    Example:
        >>> import greenprof, torch
        >>> model = torch.nn.Linear(8, 2)
        >>> with greenprof.profile() as prof:  # doctest: +SKIP
        ...     model(torch.randn(4, 8)).sum().backward()
        >>> prof.session.layers()  # doctest: +SKIP
        >>> @greenprof.profile()
        ... def train():
        ...     return model(torch.randn(4, 8)).sum().item()
        >>> loss = train()  # doctest: +SKIP
        >>> train.session.total_energy_j  # doctest: +SKIP
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
        calibrate: bool = True,
        calibrate_s: float | None = None,
        tensorboard: str | Path | None = None,
        wandb: Any = None,
    ) -> None:
        self.interval_s = check_interval_s(interval_s)
        self._sensor_spec = sensors
        self.rated_cpu_power_w = rated_cpu_power_w
        self.trace_steps = trace_steps
        self.extra_meta = dict(meta or {})
        self.bootstrap = bootstrap
        if calibrate_s is not None and not calibrate_s >= 0:
            raise ConfigError(f"calibrate_s must be a number of seconds >= 0, got {calibrate_s!r}")
        self.calibrate = bool(calibrate)
        self.calibrate_s = calibrate_s
        self._capture: CallCapture | None = None
        self._calibration: CalibrationRun | None = None
        self._calibration_note = ""
        self.tensorboard = tensorboard
        outputs.check_wandb(wandb)
        self.wandb = wandb
        self.session: Session | None = None
        self.sensors: list[Sensor] = []
        self.time_table: TimeTable | None = None
        self.sensor_series: list[SensorSeries] = []
        self._recorder: HookRecorder | None = None
        self._sampler: Sampler | None = None
        self._timeline: Timeline | None = None
        # On CUDA runs: the same events at the hooks' host times, for the sensors that follow them.
        self._host_timeline: Timeline | None = None
        self.host_time_table: TimeTable | None = None
        self._watch = GenerationWatch()
        self._started_at = ""
        self._ownership: Ownership | None = None
        self._marks, self._load = StepMarks(), LoadProbe()

    # ------------------------------------------------------------ decorator
    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Profile every call of ``func``; its session is the wrapper's ``session`` afterwards."""
        return outputs.decorated(self, func)

    # ------------------------------------------------------------ context
    def __enter__(self) -> profile:
        self.sensors, self._ownership = resolve_sensors(self._sensor_spec, self.rated_cpu_power_w)
        recorder = HookRecorder()
        recorder.install()  # raises first when already profiling: nothing to clean up then
        if self.calibrate:
            # Installed after the recorder's hooks would run after them; its hook only reads keys
            # the recorder's pre-hook has already given, so the order is free.
            self._capture = CallCapture(recorder.is_root)
            self._capture.install()
        try:
            self._sampler = Sampler(self.sensors, interval_s=self.interval_s)
            self._sampler.start()
        except BaseException:
            recorder.remove()
            if self._capture is not None:
                self._capture.release()
            raise
        self._started_at = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        self._timeline = StartupTimeline(
            now_ns(),
            int(self.interval_s * 1e9) // 10,
            trace_steps=self.trace_steps,
            gaps=self._known_gaps,
        )
        recorder.step_callback = self._maybe_drain
        self._marks, self._load = StepMarks(), LoadProbe()
        self._recorder = recorder
        self._watch.install()
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
        self._watch.remove()
        cuda = self._recorder.cuda
        resources.wait_for_devices(cuda.devices if cuda is not None else ())
        t_end_ns = now_ns()
        meta = {**self.extra_meta, "load": self._load.facts()}
        if exc_type is not None:
            meta.setdefault("interrupted", issubclass(exc_type, (KeyboardInterrupt, Terminated)))
            meta.setdefault("error", f"{exc_type.__name__}: {exc}")
        interrupted: BaseException | None = None
        try:
            self._feed(final=True)
            table = self._timeline.finish(t_end_ns)
            if self._host_timeline is not None:
                self.host_time_table = self._host_timeline.finish(t_end_ns)
            try:
                self._run_calibration(table, stopped_by=exc_type)
            except KeyboardInterrupt as stop:
                # Ctrl-C during calibration: the run's session without calibration, then stop.
                interrupted = stop
                self._calibration = None
                self._calibration_note = "calibration was interrupted (Ctrl-C); not calibrated"
            self._sampler.stop()
            self.session = self._build_session(table, meta)
        except KeyboardInterrupt as stop:
            # Ctrl-C while attributing (often a second one, after the script's): keep what the
            # sensors measured, then stop as asked.
            interrupted = stop
            meta["interrupted"] = True
            self.session = self._fallback(meta, "attribution was interrupted (Ctrl-C)")
        except Exception:
            if exc_type is None:
                raise
            # Never hide the user's exception behind ours; keep what the sensors measured.
            logger.exception("greenprof: could not attribute energy; saving sensor totals only")
            self.session = self._fallback(meta, "attribution failed")
        finally:
            self._sampler.stop()
            if self._capture is not None:
                self._capture.release()
            for sensor in self.sensors:
                resources.close_quietly(sensor)
        if self.session is not None:
            outputs.to_trackers(self.session, tensorboard=self.tensorboard, wandb=self.wandb)
        if interrupted is not None:
            raise interrupted

    def _run_calibration(self, table: TimeTable, *, stopped_by: type[BaseException] | None) -> None:
        """Replay the captured layers, when that is on and needed (see profiler.calibration)."""
        assert self._recorder is not None and self._sampler is not None
        capture = self._capture
        if capture is None:
            self._calibration_note = "calibration is off"
            return
        capture.disarm()
        if stopped_by is not None:
            # A terminated job has seconds left; a failed one has nothing worth replaying.
            why = "was stopped by a signal" if issubclass(stopped_by, Terminated) else "raised"
            self._calibration_note = f"not calibrated: the profiled code {why}"
            return
        if not capture.calls:
            self._calibration_note = "not calibrated: no model call was captured"
            return
        series = list(self._sampler.series().values())
        plan, note = calibration.plan_for(
            table,
            self._recorder.keys,
            series,
            interval_s=self.interval_s,
            calibrate_s=self.calibrate_s,
            several_ranks=resources.several_ranks(),
        )
        if plan is None:
            self._calibration_note = note
            return
        self._calibration = calibration.calibrate(
            self._recorder,
            list(capture.calls.values()),
            plan,
            table,
            clock=now_ns,
            bin_ns=int(self.interval_s * 1e9) // 10,
        )

    def _fallback(self, meta: dict[str, Any], why: str) -> Session:
        assert self._sampler is not None and self._timeline is not None
        series = frames.sensor_series(self.sensors, self._sampler)
        return frames.fallback_session(series, meta, self._timeline.t_start_ns, why=why)

    def energy_so_far_j(self) -> float:
        """Joules the sensors have counted since the profile started (while it runs).

        For live figures (e.g. energy per logging interval); only as fresh as the sensors'
        last update, and without the per-layer split or uncertainty of the final session.
        """
        if self._sampler is None:
            raise ProfilerError("the profile has not started")
        return float(sum(e[-1] - e[0] for _t, e in self._sampler.series().values() if len(e) > 1))

    def layers_for(self, result: Attribution) -> pd.DataFrame:
        """Per-layer table of another attribution of this profile's recording.

        For re-analysis: ``attribute(prof.time_table, prof.sensor_series, method=...,
        host_table=prof.host_time_table)`` gives the result (``host_time_table`` is None but on
        CUDA runs); this names its columns as :meth:`Session.layers` does.
        """
        if self.time_table is None:
            raise ProfilerError("the profile has not finished yet")
        return frames.layers_frame(self.time_table, result, self.column_names())

    def column_names(self) -> list[tuple[str, str]]:
        """``(module, type)`` of each column of :attr:`time_table`."""
        if self.time_table is None or self._recorder is None:
            raise ProfilerError("the profile has not finished yet")
        return frames.column_names(self.time_table, self._recorder.keys)

    def _known_gaps(self) -> tuple[np.ndarray, np.ndarray]:
        """Every sensor's update gaps so far, merged: where the timeline must keep fine cells."""
        assert self._sampler is not None
        series = self._sampler.series().values()
        return union_of_gaps([update_gaps(t_ns, energy_j)[:2] for t_ns, energy_j in series])

    def _maybe_drain(self) -> None:
        self._marks.add(now_ns())
        capture = self._capture
        if capture is not None and capture.calls:
            # A step after the first root call finished: stop looking at every module call.
            capture.disarm()
        recorder = self._recorder
        if recorder is not None and self._timeline is not None and recorder.pending > DRAIN_EVENTS:
            self._feed()

    def _feed(self, *, final: bool = False) -> None:
        """Hand the recorded events to the timeline, and on CUDA runs to the host-clock one."""
        assert self._recorder is not None and self._timeline is not None
        events, host_events = self._recorder.drain_clocks(final=final)
        if host_events is not None and self._host_timeline is None:
            # Until now every event had its host time: the host timeline starts as a copy (its
            # gaps callback stays this profile's).
            self._host_timeline = copy.deepcopy(self._timeline, {id(self): self})
        self._timeline.feed(events)
        if host_events is not None and self._host_timeline is not None:
            self._host_timeline.feed(host_events)

    # ------------------------------------------------------------ session
    def _build_session(self, table: TimeTable, meta: dict[str, Any]) -> Session:
        assert self._sampler is not None and self._recorder is not None
        series = frames.sensor_series(self.sensors, self._sampler)
        # Kept for re-analysis (e.g. greenprof.attribute.fit.attribute with another method).
        self.time_table, self.sensor_series = table, series
        names = frames.column_names(table, self._recorder.keys)
        classes = frames.column_classes(table, names)
        host = self.host_time_table
        result = attribute(
            table, series, bootstrap=self.bootstrap, classes=classes, host_table=host
        )
        methods = [frames.passive_method(result)] * len(table.columns)
        calibration_facts: dict[str, Any] = {"calibrated": False, "note": self._calibration_note}
        if self._calibration is not None:
            calibrated = calibrated_attribution(
                table,
                series,
                self._calibration.calibration,
                result,
                classes=classes,
                bootstrap=self.bootstrap,
                host=host,
            )
            result, methods = calibrated.attribution, calibrated.methods
            calibration_facts = {
                "calibrated": True,
                **self._calibration.facts,
                "energy_j": calibrated.calibration_j,
                "misfit": calibrated.misfit,
            }
        layers = frames.layers_frame(table, result, names, methods)
        meta = {**frames.run_facts(), **meta}
        meta.update(
            started_at=self._started_at,
            duration_s=(table.t_end_ns - table.t_start_ns) * 1e-9,
            interval_s=self.interval_s,
            steps=table.steps or None,
            sensors=frames.sensor_facts(result, self._sampler.failures),
            sampler=self._sampler.stats(),  # what sampling cost (its thread's CPU time)
            total_energy_j=result.total_j,
            total_energy_lo_j=result.total_lo_j,
            total_energy_hi_j=result.total_hi_j,
            inconsistencies=table.inconsistencies + self._recorder.inconsistencies,
            calibration=calibration_facts,
            warnings=session_warnings(
                self._sampler.warnings,
                self._recorder.inconsistencies,
                table,
                result,
                names,
                calibrated=self._calibration is not None,
            ),
        )
        meta["warnings"] += calibration_warnings(calibration_facts)
        if self._ownership is not None:  # which GPU a rank computes on, when not sure
            meta["warnings"] += self._ownership.warnings_at_end(current_cuda_device())
        meta["warnings"] += tracking_warnings(table, self._recorder.keys, self._recorder.compiled)
        meta.update(frames.generation_facts(layers, self._watch))
        if table.steps:
            meta["energy_per_step_j"] = result.total_j / table.steps
        steps, step_modules = step_tables(self._marks, table, series, names, self.interval_s)
        return Session(
            meta,
            layers,
            frames.samples_frame(series, table.t_start_ns),
            frames.spans_frame(table, names),
            steps=steps,
            step_modules=step_modules,
        )
