import math
import signal
import threading
import time

import numpy as np
import pytest

from greenprof.errors import ConfigError, SensorError
from greenprof.measure.sampler import THREAD_NAME, Sampler
from greenprof.sensors import Sensor

WAIT_S = 10.0  # generous: only reached when something is broken


class Counting(Sensor):
    """One joule per read; records which thread read it and can signal after n reads."""

    measured = True
    device = "cpu"

    def __init__(self, name: str = "counting", *, fail_at: int | None = None, signal_at: int = 0):
        self.name = name
        self.calls = 0
        self.threads: list[str] = []
        self.fail_at = fail_at
        self.signal_at = signal_at
        self.reached = threading.Event()

    def energy_j(self) -> float:
        self.calls += 1
        self.threads.append(threading.current_thread().name)
        if self.signal_at and self.calls >= self.signal_at:
            self.reached.set()
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise SensorError(f"{self.name}: unplugged")
        return float(self.calls - 1)


class Ticking:
    """A fake clock advancing 1 ms on every call."""

    def __init__(self) -> None:
        self.t_ns = 0

    def __call__(self) -> int:
        self.t_ns += 1_000_000
        return self.t_ns


def test_start_and_stop_each_sample_synchronously_around_the_thread():
    sensor = Counting(signal_at=3)
    sampler = Sampler([sensor], interval_s=0.001)

    sampler.start()
    assert sensor.threads[0] == threading.current_thread().name
    assert sensor.reached.wait(WAIT_S), "the background thread never sampled"
    sampler.stop()

    assert sensor.threads[-1] == threading.current_thread().name
    assert THREAD_NAME in sensor.threads[1:-1]
    assert not any(t.name == THREAD_NAME for t in threading.enumerate())
    t_ns, energy_j = sampler.series()["counting"]
    assert len(t_ns) == sensor.calls
    assert np.all(np.diff(t_ns) >= 0)
    assert energy_j[-1] - energy_j[0] == sensor.calls - 1


def test_stop_wakes_the_thread_at_once():
    sampler = Sampler([Counting()], interval_s=3600.0)
    sampler.start()

    began = time.perf_counter()
    sampler.stop()

    assert time.perf_counter() - began < 1.0
    assert len(sampler.series()["counting"][0]) == 2  # start and stop, nothing between


def test_context_manager_brackets_the_block():
    sensor = Counting()
    with Sampler([sensor], interval_s=3600.0) as sampler:
        assert sensor.calls == 1
    assert sensor.calls == 2
    assert sampler.stop() is sampler  # a second stop does nothing
    assert sensor.calls == 2


def test_cannot_start_twice():
    sampler = Sampler([Counting()], interval_s=3600.0).start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            sampler.start()
    finally:
        sampler.stop()
    with pytest.raises(RuntimeError, match="already stopped"):
        sampler.start()


def test_timestamps_come_from_the_injected_clock():
    clock = Ticking()
    sampler = Sampler([Counting("a"), Counting("b")], clock=clock)

    sampler.sample_once()
    sampler.sample_once()

    series = sampler.series()
    # Each reading is stamped with the middle of the clock reads around it.
    assert series["a"][0].tolist() == [1_500_000, 5_500_000]
    assert series["b"][0].tolist() == [3_500_000, 7_500_000]
    assert series["a"][0].dtype == np.int64 and series["a"][1].dtype == np.float64


def test_failing_sensor_is_dropped_and_the_others_go_on(caplog):
    flaky, steady = Counting("flaky", fail_at=3), Counting("steady")
    sampler = Sampler([flaky, steady], clock=Ticking())

    for _ in range(5):
        sampler.sample_once()

    assert flaky.calls == 3  # not read again after failing
    assert sampler.failures == {"flaky": "SensorError: flaky: unplugged"}
    assert len(sampler.warnings) == 1 and "flaky" in sampler.warnings[0]
    assert "flaky" in caplog.text
    series = sampler.series()
    assert series["flaky"][1].tolist() == [0.0, 1.0]  # what it measured before failing
    assert series["steady"][1].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_sensor_failing_at_start_does_not_stop_the_start():
    dead, steady = Counting("dead", fail_at=1), Counting("steady")

    with Sampler([dead, steady], interval_s=3600.0) as sampler:
        pass

    assert set(sampler.failures) == {"dead"}
    assert len(sampler.series()["dead"][0]) == 0
    assert len(sampler.series()["steady"][0]) == 2


def test_failure_on_the_thread_keeps_the_others_sampling():
    flaky, steady = Counting("flaky", fail_at=3), Counting("steady", signal_at=10)

    with Sampler([flaky, steady], interval_s=0.001) as sampler:
        assert steady.reached.wait(WAIT_S)

    assert set(sampler.failures) == {"flaky"}
    assert len(sampler.series()["flaky"][0]) == 2
    assert len(sampler.series()["steady"][0]) >= 10


class Broken(Sensor):
    name, device, measured = "broken", "cpu", True

    def __init__(self, values):
        self.values = iter(values)

    def energy_j(self) -> float:
        return next(self.values)


@pytest.mark.parametrize(
    ("values", "reason"), [([1.0, 0.5], "backwards"), ([1.0, math.nan], "nan joules")]
)
def test_readings_that_break_the_sensor_contract_fail_the_sensor(values, reason):
    sampler = Sampler([Broken(values)])

    sampler.sample_once()
    sampler.sample_once()
    sampler.sample_once()  # not read again: the iterator would raise StopIteration

    assert reason in sampler.failures["broken"]
    assert sampler.series()["broken"][1].tolist() == [1.0]


def test_memory_stays_bounded_and_totals_exact():
    sensor = Counting()
    sampler = Sampler([sensor], clock=Ticking(), capacity=8)

    for _ in range(10_000):
        sampler.sample_once()
        t_ns, energy_j = sampler.series()["counting"]
        assert len(t_ns) <= 8
        assert energy_j[-1] == sensor.calls - 1  # the newest sample is always there

    t_ns, energy_j = sampler.series()["counting"]
    assert (t_ns[0], energy_j[0]) == (1_500_000, 0.0)  # the first sample
    assert energy_j[-1] == 9_999.0  # the newest sample
    assert np.all(np.diff(t_ns) > 0) and np.all(np.diff(energy_j) > 0)
    interior_steps = np.diff(energy_j[:-1])
    assert np.all(interior_steps == interior_steps[0]), "thinning must stay uniform"


def test_thinning_keeps_every_sample_until_full():
    sampler = Sampler([Counting()], capacity=8)
    for _ in range(7):
        sampler.sample_once()

    assert sampler.series()["counting"][1].tolist() == [0, 1, 2, 3, 4, 5, 6]


def test_series_returns_copies():
    sampler = Sampler([Counting()])
    sampler.sample_once()
    sampler.series()["counting"][1][0] = 99.0

    assert sampler.series()["counting"][1][0] == 0.0


def test_series_is_consistent_while_the_thread_writes():
    # The reader holds the GIL most of the time, so keep the writer's work small.
    sensor = Counting(signal_at=40)
    passes = 0
    with Sampler([sensor], interval_s=0.0001, capacity=8) as sampler:
        while True:
            done = sensor.reached.is_set()
            t_ns, energy_j = sampler.series()["counting"]
            passes += 1
            assert len(t_ns) == len(energy_j) <= 8
            assert np.all(np.diff(t_ns) >= 0) and np.all(np.diff(energy_j) >= 0)
            if done:
                break
    assert passes > 0
    t_ns, energy_j = sampler.series()["counting"]
    assert len(t_ns) < sensor.calls  # thinned while it was being read
    assert energy_j[-1] == sensor.calls - 1  # the newest reading (it counts from 0) is kept


@pytest.mark.parametrize("interval_s", [0, -0.01, math.nan, math.inf])
def test_interval_must_be_positive(interval_s):
    with pytest.raises(ConfigError, match="interval_s"):
        Sampler([Counting()], interval_s=interval_s)


def test_other_bad_configurations():
    with pytest.raises(ConfigError, match="capacity"):
        Sampler([Counting()], capacity=3)
    with pytest.raises(ConfigError, match="unique.*same"):
        Sampler([Counting("same"), Counting("same")])


def test_mean_power_over_a_short_window():
    from greenprof.measure.sampler import mean_power_w
    from greenprof.sensors import ReplaySensor

    steady = ReplaySensor([0.0, 1000.0], [0.0, 50_000.0], name="steady")  # 50 W throughout
    power_w = mean_power_w([steady, Counting("flaky", fail_at=2)], 0.05)

    assert power_w["steady"] == pytest.approx(50.0, rel=0.01)  # stamps vs the replay clock
    assert "unplugged" in power_w["flaky"]


class Stepped(Sensor):
    """A counter that moves by one joule on every ``every``-th read, like a slow hardware one."""

    measured = True
    device = "sim"
    name = "stepped"

    def __init__(self, every: int) -> None:
        self.every = every
        self.calls = 0

    def energy_j(self) -> float:
        self.calls += 1
        return float((self.calls - 1) // self.every)


def test_a_run_of_equal_readings_keeps_its_first_and_newest_sample():
    sampler = Sampler([Stepped(every=4)], clock=Ticking())
    for _ in range(10):
        sampler.sample_once()

    t_ns, energy_j = sampler.series()["stepped"]
    # Reads 0-3 give 0 J, 4-7 give 1 J, 8-9 give 2 J; only the ends of each run remain.
    assert energy_j.tolist() == [0, 0, 1, 1, 2, 2]
    assert (t_ns // 1_000_000).tolist() == [1, 7, 9, 15, 17, 19]


def watch_after(updates_ms: list[float], poll_ms: float = 10.0, until_ms: float | None = None):
    """An UpdateWatch fed the polls of a counter that moves at ``updates_ms``."""
    from greenprof.measure.samples import UpdateWatch

    watch = UpdateWatch(int(poll_ms * 1e6))
    end_ms = until_ms if until_ms is not None else updates_ms[-1] + poll_ms
    t_ms = 0.0
    while t_ms <= end_ms:
        watch.observe(int(t_ms * 1e6), float(sum(u <= t_ms for u in updates_ms)))
        t_ms += poll_ms
    return watch, int(t_ms * 1e6) - int(poll_ms * 1e6)


def test_a_slow_counter_is_polled_finely_just_before_its_next_update():
    # Updates every 50 ms at 5 ms past a poll: the last one, seen at poll 210 ms, came after 200.
    watch, now_ns = watch_after([5.0 + 50 * k for k in range(1, 5)])
    # Gaps are at least 50 - 10 = 40 ms; fine polling starts one 1 ms poll before 200 + 40 ms.
    assert watch.due_in_ns(now_ns) == pytest.approx((200 + 40 - 1 - 210) * 1e6, abs=1e3)


def test_a_counter_changing_at_every_poll_is_not_refined():
    watch, now_ns = watch_after([10.0 * k + 5 for k in range(30)])
    assert watch.due_in_ns(now_ns) is None


def test_refining_stops_when_the_counter_stops_moving():
    updates = [5.0 + 50 * k for k in range(1, 5)]
    watch, now_ns = watch_after(updates, until_ms=updates[-1] + 500)
    assert watch.due_in_ns(now_ns) is None


def test_the_refining_decision_follows_the_median_gap_as_the_history_turns_over():
    # A counter that alternates between fast stretches (an update at every poll) and slow ones
    # (every 50 ms), for longer than the gap history: the watch refines exactly when the median
    # of its remembered gaps is at least a poll interval, as a sort of the history would say.
    import random

    from greenprof.measure.samples import _GAP_HISTORY, UpdateWatch

    poll_ns = 10_000_000
    rng = random.Random(7)
    watch = UpdateWatch(poll_ns)
    gaps: list[int] = []
    last = None
    update_hi = None
    energy_j = 0.0
    refined = []
    for poll in range(2_000):
        slow = (poll // 150) % 2 == 1
        if not slow or rng.random() < 0.2:
            energy_j += 1.0
        t_ns = poll * poll_ns
        watch.observe(t_ns, energy_j)
        if last is not None and energy_j != last[1]:
            if update_hi is not None:
                gaps = (gaps + [last[0] - update_hi])[-_GAP_HISTORY:]
            update_hi = t_ns
            median = sorted(gaps)[len(gaps) // 2] if len(gaps) >= 3 else None
            expect = median is not None and median >= poll_ns
            assert (watch.due_in_ns(t_ns) is not None) == expect, poll
            refined.append(expect)
        last = (t_ns, energy_j)
    assert any(refined) and not all(refined)


class WallStepped(Sensor):
    """Moves every ``period_s`` of wall time; signals after ``updates`` moves were read."""

    measured = True
    calls = 0
    device = "sim"
    name = "wall-stepped"

    def __init__(self, period_s: float, updates: int) -> None:
        self.period_s = period_s
        self.t0 = time.perf_counter()
        self.updates = updates
        self.reached = threading.Event()

    def energy_j(self) -> float:
        self.calls += 1
        moves = (time.perf_counter() - self.t0) // self.period_s
        if moves >= self.updates:
            self.reached.set()
        return float(moves)


def test_the_thread_places_a_slow_counters_updates_finer_than_its_interval(monkeypatch):
    from greenprof.measure import sampler as sampler_module

    # On a busy machine wakeups come late and fine polls are held back (tested on its own below).
    monkeypatch.setattr(sampler_module, "fine_polls_pay", lambda lateness_s, fine_s: True)
    sensor, other = WallStepped(0.06, updates=16), Counting()
    with Sampler([sensor, other], interval_s=0.02) as sampler:
        assert sensor.reached.wait(WAIT_S)
    t_ns, energy_j = sampler.series()["wall-stepped"]
    changed = np.flatnonzero(np.diff(energy_j) != 0) + 1
    widths_ms = (t_ns[changed] - t_ns[changed - 1]) / 1e6
    # The first updates teach the gap at 20 ms; the later ones are bracketed at ~2 ms.
    assert np.median(widths_ms[6:]) < 10.0
    # Fine polls read only the counter that is due; the other one keeps the interval.
    assert other.calls < sensor.calls
    stats = sampler.stats()
    assert stats["fine_polls"] > 0
    assert stats["ticks"] >= 1
    assert stats["thread_cpu_s"] > 0


def test_fine_polls_wait_while_wakeups_come_later_than_a_fine_step():
    from greenprof.measure.sampler import fine_polls_pay

    assert fine_polls_pay([0.0001] * 8, fine_s=0.001)
    # One late wakeup (the OS) does not stop refining; most of them late (the GIL) does.
    assert fine_polls_pay([0.0001] * 7 + [0.02], fine_s=0.001)
    assert not fine_polls_pay([0.004] * 5 + [0.0001] * 3, fine_s=0.001)
    assert fine_polls_pay([], fine_s=0.001)


def test_a_thinned_slow_counter_still_shows_when_it_held_its_value():
    from greenprof.attribute.windows import update_gaps
    from greenprof.measure.samples import SampleBuffer

    buffer = SampleBuffer(512)
    for poll in range(40_000):  # a counter moving every 100 polls, thinned several times over
        buffer.append(poll, float((poll + 50) // 100))
    assert buffer.stride > 1
    lo, hi, _ = update_gaps(*buffer.copy())
    assert np.all(hi > lo)  # each update still lies between a poll before it and one after
    assert np.median(hi - lo) < 100


class MaskReporting(Sensor):
    """Records the signals blocked on the thread that reads it, once the sampler's thread has."""

    name, device, measured = "mask", "cpu", True

    def __init__(self):
        self.masks: list[set[int]] = []
        self.read_on_sampler = threading.Event()

    def energy_j(self) -> float:
        if threading.current_thread().name == THREAD_NAME:
            self.masks.append(set(signal.pthread_sigmask(signal.SIG_BLOCK, [])))
            self.read_on_sampler.set()
        return 0.0


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="no POSIX signal masks")
def test_the_sampler_thread_leaves_ctrl_c_and_stop_signals_to_the_main_thread():
    sensor = MaskReporting()
    with Sampler([sensor], interval_s=0.001):
        assert sensor.read_on_sampler.wait(WAIT_S)
    assert {signal.SIGINT, signal.SIGTERM} <= sensor.masks[0]
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the test's own
