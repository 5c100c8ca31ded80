"""The background thread that reads every sensor at a fixed interval.

The result is one ``(t_ns, energy_j)`` series per sensor, timestamped with the clock the hooks
use. :meth:`Sampler.start` and :meth:`Sampler.stop` each take one sample themselves, so the series
always brackets the profiled code, however short.

Counters that update slower than they are polled (NVML's energy every 20-100 ms) only say that
an update happened somewhere between two polls. Once such a counter's shortest gap between updates
is known, the sampler polls ten times faster from one such poll before its next update can come
until it sees it, so each update is placed to a tenth of the interval at a fraction of the cost of
polling that fast throughout.

Every read needs the GIL. When the profiled thread runs Python, the sampler's wakeups come late
(it waits for the interpreter's switch interval) and each one takes the GIL from that thread; fine
polls would then neither place updates better nor be cheap. So the sampler measures how late its
own wakeups come, and while the recent ones (median) are later than a fine poll's step it skips
fine polling and keeps only the regular ticks, which go on measuring the lateness. Waiting happens
in one C call (a lock's timed acquire, which ``stop()`` releases): no Python runs between wakeups.

Memory stays bounded on runs of any length: a run of equal readings keeps only its first and newest
sample (only changes carry timing); each sensor's samples live in preallocated arrays; when they
fill up, every other interior sample is dropped and from then on only every other new sample is
kept (the first and the newest always are). Energy is cumulative, so thinning loses time
resolution, never joules.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Sequence

from greenprof.clock import now_ns
from greenprof.errors import ConfigError
from greenprof.measure.samples import REFINE_FACTOR, SampleBuffer, Series, UpdateWatch
from greenprof.sensors.base import Sensor

logger = logging.getLogger(__name__)

#: Samples kept per sensor before thinning: 20 minutes at 10 ms, 2 MiB per sensor.
DEFAULT_CAPACITY = 1 << 17

THREAD_NAME = "greenprof-sampler"

#: How long stop() waits for a sensor read in progress before giving up on the thread.
_JOIN_TIMEOUT_S = 5.0

#: Wakeups whose lateness decides whether fine polls are worth taking the GIL for.
_LATENESS_WINDOW = 8


def fine_polls_pay(lateness_s: Sequence[float], fine_s: float) -> bool:
    """Whether fine polls can place updates better than regular ticks, given recent lateness.

    Args:
        lateness_s: how late the sampler's recent wakeups came, seconds.
        fine_s: the step between fine polls.

    Returns:
        False when the median wakeup came later than a fine step: the profiled thread holds the
        GIL (or the CPU is oversubscribed), so fine polls would land no closer to an update and
        each would take the GIL from the program.
    """
    ordered = sorted(lateness_s)
    return not ordered or ordered[len(ordered) // 2] <= fine_s


def check_interval_s(interval_s: object) -> float:
    """Return a sampling interval as float seconds.

    Raises:
        ConfigError: it is not a finite, positive number.
    """
    if not (isinstance(interval_s, (int, float)) and math.isfinite(interval_s)):
        raise ConfigError(f"interval_s must be a number of seconds, got {interval_s!r}")
    if interval_s <= 0:
        raise ConfigError(f"interval_s must be positive, got {interval_s!r}")
    return float(interval_s)


#: Signals a process gets from outside (a terminal's Ctrl-C, a scheduler's stop) whose Python
#: handlers run on the main thread.
_MAIN_THREAD_SIGNALS = frozenset(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM")
    if hasattr(signal, name)
)


def leave_signals_to_the_main_thread() -> None:
    """Block the calling thread from receiving :data:`_MAIN_THREAD_SIGNALS`.

    The kernel gives a process's signal to any thread that does not block it. Taken on the
    sampler's thread, a Ctrl-C only reaches the main thread's handler once that thread next checks
    for signals, which may be after more of the user's code ran.
    """
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, _MAIN_THREAD_SIGNALS)


class Sampler:
    """Reads each sensor's cumulative energy on a background thread.

    Args:
        sensors: the sensors to read; their names must be unique.
        interval_s: seconds between samples.
        clock: monotonic nanoseconds for timestamps; the same clock the hooks use.
        capacity: samples kept per sensor before thinning (at least 4).

    Attributes:
        failures: sensor name -> why it failed; a failed sensor is no longer read, and what it
            measured before failing stays in :meth:`series`.
        warnings: things a report should say about the sampling (failed sensors, missed ticks).

    Raises:
        ConfigError: for a non-positive interval, a capacity below 4 or duplicate sensor names.

    Example:
        >>> from greenprof.sensors import ReplaySensor
        >>> sensor = ReplaySensor([0.0, 1.0], [0.0, 10.0], name="demo")
        >>> with Sampler([sensor], interval_s=0.01) as sampler:
        ...     pass
        >>> t_ns, energy_j = sampler.series()["demo"]
        >>> len(t_ns) >= 2
        True
    """

    def __init__(
        self,
        sensors: Sequence[Sensor],
        *,
        interval_s: float = 0.01,
        clock: Callable[[], int] = now_ns,
        capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        interval_s = check_interval_s(interval_s)
        if capacity < 4:
            raise ConfigError(f"capacity must be at least 4 samples, got {capacity!r}")
        names = [s.name for s in sensors]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"sensor names must be unique; repeated: {', '.join(repeated)}")
        self.interval_s = float(interval_s)
        self.failures: dict[str, str] = {}
        self.warnings: list[str] = []
        self._clock = clock
        self._sensors = list(sensors)
        self._active = list(sensors)
        self._buffers = {s.name: SampleBuffer(capacity) for s in sensors}
        interval_ns = int(self.interval_s * 1e9)
        self._watches = {s.name: UpdateWatch(interval_ns) for s in sensors}
        self._lock = threading.Lock()  # guards the buffers against series() from other threads
        # Held while the thread runs; stop() releases it, which ends the thread's timed wait.
        self._running = threading.Lock()
        self._thread: threading.Thread | None = None
        self._state = "new"
        self._ticks = 0
        self._missed_ticks = 0
        self._fine_polls = 0
        self._fine_skipped = 0  # ticks where a counter's update was due but fine polls waited
        self._thread_cpu_s = 0.0
        self._lateness_s: list[float] = [0.0] * _LATENESS_WINDOW

    # ------------------------------------------------------------ lifecycle
    def start(self) -> Sampler:
        """Take the first sample, then start the background thread.

        Raises:
            RuntimeError: when the sampler was already started.
        """
        if self._state != "new":
            raise RuntimeError(f"Sampler.start(): the sampler is already {self._state}")
        self._state = "running"
        self.sample_once()
        self._running.acquire()
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Sampler:
        """Stop the thread, wait for it, then take the last sample; a second call does nothing."""
        if self._state != "running":
            return self
        self._state = "stopped"
        self._running.release()
        assert self._thread is not None
        self._thread.join(_JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            # A sensor read is hanging; a final read now could race it, so the series ends early.
            self._warn(f"sampler thread did not stop within {_JOIN_TIMEOUT_S:g} s (sensor hung)")
        else:
            self.sample_once()
        if self._ticks and self._missed_ticks > self._ticks // 10:
            self._warn(
                f"sampler missed {self._missed_ticks} of {self._ticks + self._missed_ticks} ticks "
                f"of interval_s={self.interval_s:g}: the sensors are slow to read, or the "
                "profiled code kept the GIL (long pure-Python work)"
            )
        for sensor in self._sensors:
            try:
                caveats = sensor.caveats()
            except Exception:  # a caveat is a courtesy: never lose the samples over it
                logger.debug("greenprof: %s.caveats() failed", sensor.name, exc_info=True)
                continue
            for caveat in caveats:
                self._warn(caveat)
        return self

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        leave_signals_to_the_main_thread()
        cpu0_s = time.thread_time()
        interval_s = self.interval_s
        fine_s = interval_s / REFINE_FACTOR
        fine_ns = int(fine_s * 1e9)
        next_tick = time.perf_counter() + interval_s
        wake = next_tick
        lateness = self._lateness_s
        woken = 0
        # The lock's timed acquire waits in C without the GIL; stop() releasing it wakes us.
        while not self._running.acquire(timeout=max(wake - time.perf_counter(), 0.0)):
            now = time.perf_counter()
            lateness[woken % _LATENESS_WINDOW] = now - wake
            woken += 1
            if now < next_tick:
                # Between ticks: read only the counters whose update is due.
                self.sample_once(self._due_sensors(fine_ns))
                self._fine_polls += 1
            else:
                self.sample_once()
                self._ticks += 1
                next_tick += interval_s
                behind_s = time.perf_counter() - next_tick
                if behind_s > 0:
                    # Skip the ticks already missed rather than sampling in a burst to catch up.
                    missed = int(behind_s // interval_s) + 1
                    self._missed_ticks += missed
                    next_tick += missed * interval_s
                self._thread_cpu_s = time.thread_time() - cpu0_s
            wake = next_tick
            due_ns = self._next_due_ns()
            if due_ns is not None:
                if not fine_polls_pay(lateness, fine_s):
                    self._fine_skipped += 1  # wakeups come late: only regular ticks run now
                else:
                    wake = min(wake, time.perf_counter() + max(due_ns, fine_ns) * 1e-9)
        self._thread_cpu_s = time.thread_time() - cpu0_s

    def stats(self) -> dict[str, float]:
        """What sampling cost the program and how well it kept its pace, so far.

        ``ticks`` and ``missed_ticks`` count the regular samples taken and skipped (the thread
        woke too late for them); ``fine_polls`` the extra reads around slow counters' updates;
        ``fine_polls_held_back`` the ticks where an update was due but fine polls waited because
        wakeups came late (the profiled thread held the GIL); ``thread_cpu_s`` the sampler
        thread's own CPU time.
        """
        return {
            "ticks": self._ticks,
            "missed_ticks": self._missed_ticks,
            "fine_polls": self._fine_polls,
            "fine_polls_held_back": self._fine_skipped,
            "thread_cpu_s": self._thread_cpu_s,
        }

    def _next_due_ns(self) -> int | None:
        """Nanoseconds until some slow counter's update is due, or None when none is watched."""
        now_ns = self._clock()
        soonest_ns = None
        for sensor in self._active:
            due_ns = self._watches[sensor.name].due_in_ns(now_ns)
            if due_ns is not None and (soonest_ns is None or due_ns < soonest_ns):
                soonest_ns = due_ns
        return soonest_ns

    def _due_sensors(self, within_ns: int) -> list[Sensor]:
        """Working sensors whose next update is due within ``within_ns``."""
        now_ns = self._clock()
        return [
            s
            for s in self._active
            if (d := self._watches[s.name].due_in_ns(now_ns)) is not None and d <= within_ns
        ]

    # ------------------------------------------------------------- sampling
    def sample_once(self, sensors: Sequence[Sensor] | None = None) -> None:
        """Read every working sensor (or only ``sensors``) once and store the readings."""
        clock = self._clock
        readings: list[tuple[str, int, float]] = []
        # A failing sensor rebinds ``_active`` to a new list, so iterating the old one is safe.
        for sensor in self._active if sensors is None else sensors:
            t0_ns = clock()
            try:
                energy_j = float(sensor.energy_j())
            except Exception as exc:
                self._fail(sensor, f"{type(exc).__name__}: {exc}")
                continue
            t1_ns = clock()
            # The reading happened somewhere inside the call; its middle is the best guess.
            readings.append((sensor.name, (t0_ns + t1_ns) // 2, energy_j))
        with self._lock:
            for name, t_ns, energy_j in readings:
                buffer = self._buffers[name]
                last_j = buffer.last_energy_j
                if not math.isfinite(energy_j):
                    self._drop_locked(name, f"returned {energy_j} joules")
                elif last_j is not None and energy_j < last_j:
                    self._drop_locked(name, f"energy went backwards ({last_j} -> {energy_j} J)")
                else:
                    buffer.append(t_ns, energy_j)
                    self._watches[name].observe(t_ns, energy_j)

    def _fail(self, sensor: Sensor, reason: str) -> None:
        with self._lock:
            self._drop_locked(sensor.name, reason)

    def _drop_locked(self, name: str, reason: str) -> None:
        """Stop reading sensor ``name``; what it gave so far stays. Caller holds the lock."""
        self._active = [s for s in self._active if s.name != name]
        self.failures[name] = reason
        self._warn_locked(
            f"sensor {name} failed and is no longer read ({reason}); "
            "the samples it gave before are kept"
        )

    def _warn(self, message: str) -> None:
        with self._lock:
            self._warn_locked(message)

    def _warn_locked(self, message: str) -> None:
        self.warnings.append(message)
        logger.warning("%s", message)

    # --------------------------------------------------------------- result
    def series(self) -> dict[str, Series]:
        """Return each sensor's samples so far: ``name -> (t_ns int64, energy_j float64)``.

        The arrays are copies, safe to keep while sampling goes on. Failed sensors are included
        with what they measured before failing.
        """
        with self._lock:
            return {name: buffer.copy() for name, buffer in self._buffers.items()}


def mean_power_w(sensors: Sequence[Sensor], seconds: float) -> dict[str, float | str]:
    """Sample ``sensors`` for ``seconds`` and return each one's mean power in watts.

    A sensor that fails maps to the reason instead. Sampling runs throughout, not just at both
    ends, so that sensors integrating power (older GPUs) are read often enough.
    """
    with Sampler(sensors, interval_s=min(0.05, seconds / 10)) as sampler:
        time.sleep(seconds)
    power_w: dict[str, float | str] = {}
    for name, (t_ns, energy_j) in sampler.series().items():
        elapsed_s = (t_ns[-1] - t_ns[0]) / 1e9 if len(t_ns) > 1 else 0.0
        if name in sampler.failures:
            power_w[name] = sampler.failures[name]
        elif elapsed_s <= 0:
            power_w[name] = "no time elapsed between readings"
        else:
            power_w[name] = float(energy_j[-1] - energy_j[0]) / elapsed_s
    return power_w
