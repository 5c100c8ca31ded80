"""How much CPU the sampler thread costs, with the sensors detect() finds on this machine.

For each interval it runs the sampler for a while; the sampler thread measures its own CPU time
(``time.thread_time`` in that thread, ``Sampler.stats()``): CPU seconds per wall second is the
share of one core the profiler takes from the user's program. It does this twice: with the main
thread idle, and with the main thread busy running Python (holding the GIL), which is what a
training loop does between CUDA calls; the second run also shows whether the sampler keeps its
pace (missed ticks) and whether it held back its fine polls (they would take the GIL from the
busy thread without placing updates any better).

Before the table it prints the machine's floor: the CPU time of a thread that only wakes at each
interval (the same timed wait, reading nothing). No sampler can cost less than that; on virtual
machines a wakeup alone can cost a hundred microseconds.

With --slow-counter-ms P it adds a simulated counter that updates every P ms (as NVML's energy
does), so the cost of polling faster around its updates shows too; the last column then gives its
reads per second as well.

Usage:
    python benchmarks/sampler_overhead.py [--seconds 5] [--intervals-ms 10 1] [--slow-counter-ms 50]
"""

from __future__ import annotations

import argparse
import logging
import threading
import time

from greenprof.measure.sampler import Sampler
from greenprof.sensors import Sensor, detect

TARGET_SHARE_AT_10_MS = 0.01  # of one core


class Counted(Sensor):
    """Wraps a sensor and counts its reads (stored samples are fewer: equal readings collapse)."""

    def __init__(self, inner: Sensor) -> None:
        self.inner = inner
        self.name, self.device, self.measured = inner.name, inner.device, inner.measured
        self.reads = 0

    def energy_j(self) -> float:
        self.reads += 1
        return self.inner.energy_j()

    def close(self) -> None:
        self.inner.close()


class SlowCounter(Sensor):
    """A counter that moves only every ``period_s``, like NVML's energy: 100 W in steps."""

    name, device, measured = "slow-counter", "sim", True

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self.t0 = time.perf_counter()

    def energy_j(self) -> float:
        return (time.perf_counter() - self.t0) // self.period_s * self.period_s * 100.0


def busy_python(until: float) -> None:
    total = 0
    while time.perf_counter() < until:
        for i in range(1000):
            total += i * i


def wakeup_floor(interval_s: float, seconds: float) -> float:
    """Share of a core a thread takes that only wakes every ``interval_s`` (no reads)."""
    shares: list[float] = []

    def wake() -> None:
        lock = threading.Lock()
        lock.acquire()
        cpu0_s, wall0_s = time.thread_time(), time.perf_counter()
        wake_s = wall0_s + interval_s
        while time.perf_counter() < wall0_s + seconds:
            lock.acquire(timeout=max(wake_s - time.perf_counter(), 0.0))
            wake_s += interval_s
        shares.append((time.thread_time() - cpu0_s) / (time.perf_counter() - wall0_s))

    thread = threading.Thread(target=wake)
    thread.start()
    thread.join()
    return shares[0]


def measure(sensors, interval_s: float, seconds: float, busy: bool) -> dict[str, float]:
    for sensor in sensors:
        sensor.reads = 0
    sampler = Sampler(sensors, interval_s=interval_s)
    wall0 = time.perf_counter()
    sampler.start()
    try:
        if busy:
            busy_python(wall0 + seconds)
        else:
            time.sleep(seconds)
    finally:
        sampler.stop()
    wall_s = time.perf_counter() - wall0
    stats = sampler.stats()
    samples = min(s.reads for s in sensors)
    reads_hz = {s.name: s.reads / wall_s for s in sensors}
    cpu_s = stats["thread_cpu_s"]
    return {
        "share": cpu_s / wall_s,
        "per_sample_us": cpu_s / max(samples - 2, 1) * 1e6,
        "rate_hz": samples / wall_s,
        "slow_hz": reads_hz.get(SlowCounter.name, 0.0),
        "wanted_hz": 1.0 / interval_s,
        "missed": stats["missed_ticks"],
        "ticks": stats["ticks"] + stats["missed_ticks"],
        "fine": stats["fine_polls"],
        "held_back": stats["fine_polls_held_back"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each run")
    parser.add_argument("--intervals-ms", type=float, nargs="+", default=[10.0, 1.0])
    parser.add_argument(
        "--slow-counter-ms", type=float, default=0.0, help="add a counter updating this often"
    )
    args = parser.parse_args()
    # Missed ticks show in the samples/s column; the sampler's warning about them would interleave.
    logging.getLogger("greenprof.measure.sampler").setLevel(logging.ERROR)

    found = detect() + ([SlowCounter(args.slow_counter_ms / 1000)] if args.slow_counter_ms else [])
    sensors = [Counted(s) for s in found]
    print("sensors:", ", ".join(f"{s.name} ({s.device})" for s in sensors))
    for interval_ms in args.intervals_ms:
        floor = wakeup_floor(interval_ms / 1000, min(args.seconds, 3.0))
        print(
            f"floor at {interval_ms:g} ms: a thread that only wakes takes {floor * 100:.3f}% "
            "of a core on this machine"
        )
    print(
        f"{'interval':>9} {'main thread':>12} {'CPU % of a core':>16} {'us/sample':>10} "
        f"{'samples/s':>16} {'missed ticks':>14} {'fine polls':>11} {'held back':>10}"
    )
    try:
        for interval_ms in args.intervals_ms:
            for busy in (False, True):
                row = measure(sensors, interval_ms / 1000, args.seconds, busy)
                print(
                    f"{interval_ms:>7g}ms {'busy' if busy else 'idle':>12} "
                    f"{row['share'] * 100:>15.3f}% {row['per_sample_us']:>10.1f} "
                    f"{row['rate_hz']:>7.0f} of {row['wanted_hz']:<6.0f}"
                    f" {row['missed']:>6} of {row['ticks']:<6} {row['fine']:>11} "
                    f"{row['held_back']:>10}"
                    + (f" slow counter read {row['slow_hz']:.0f}/s" if row["slow_hz"] else "")
                )
                if interval_ms == 10.0:
                    verdict = "meets" if row["share"] <= TARGET_SHARE_AT_10_MS else "MISSES"
                    print(f"{'':>9} {verdict} the target of {TARGET_SHARE_AT_10_MS:.0%} at 10 ms")
    finally:
        for sensor in sensors:
            sensor.close()


if __name__ == "__main__":
    main()
