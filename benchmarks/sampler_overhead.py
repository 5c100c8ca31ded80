"""How much CPU the sampler thread costs, with the sensors detect() finds on this machine.

For each interval it runs the sampler for a while and reads the sampler thread's own CPU-time
clock (nanosecond resolution) at both ends: CPU seconds per wall second is the share of one core
the profiler takes from the user's program. It does this twice: with the main thread idle, and
with the main thread busy running Python (holding the GIL), which is what a training loop does
between CUDA calls; the second run also shows whether the sampler keeps its pace.

Usage:
    python benchmarks/sampler_overhead.py [--seconds 5] [--intervals-ms 10 1]
"""

from __future__ import annotations

import argparse
import logging
import threading
import time

from greenprof.sampler import THREAD_NAME, Sampler
from greenprof.sensors import detect

TARGET_SHARE_AT_10_MS = 0.01  # of one core


def sampler_thread() -> threading.Thread:
    (thread,) = [t for t in threading.enumerate() if t.name == THREAD_NAME]
    return thread


def busy_python(until: float) -> None:
    total = 0
    while time.perf_counter() < until:
        for i in range(1000):
            total += i * i


def measure(sensors, interval_s: float, seconds: float, busy: bool) -> dict[str, float]:
    sampler = Sampler(sensors, interval_s=interval_s)
    sampler.start()
    try:
        cpu_clock = time.pthread_getcpuclockid(sampler_thread().ident)
        cpu0_ns, wall0 = time.clock_gettime_ns(cpu_clock), time.perf_counter()
        if busy:
            busy_python(wall0 + seconds)
        else:
            time.sleep(seconds)
        cpu1_ns, wall1 = time.clock_gettime_ns(cpu_clock), time.perf_counter()
    finally:
        sampler.stop()
    samples = min(len(t_ns) for t_ns, _ in sampler.series().values())
    wall_s = wall1 - wall0
    cpu_s = (cpu1_ns - cpu0_ns) / 1e9
    return {
        "share": cpu_s / wall_s,
        "per_sample_us": cpu_s / max(samples - 2, 1) * 1e6,
        "rate_hz": samples / wall_s,
        "wanted_hz": 1.0 / interval_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each run")
    parser.add_argument("--intervals-ms", type=float, nargs="+", default=[10.0, 1.0])
    args = parser.parse_args()
    # Missed ticks show in the samples/s column; the sampler's warning about them would interleave.
    logging.getLogger("greenprof.sampler").setLevel(logging.ERROR)

    sensors = detect()
    print("sensors:", ", ".join(f"{s.name} ({s.device})" for s in sensors))
    print(
        f"{'interval':>9} {'main thread':>12} {'CPU % of a core':>16} {'us/sample':>10} "
        f"{'samples/s':>16}"
    )
    try:
        for interval_ms in args.intervals_ms:
            for busy in (False, True):
                row = measure(sensors, interval_ms / 1000, args.seconds, busy)
                print(
                    f"{interval_ms:>7g}ms {'busy' if busy else 'idle':>12} "
                    f"{row['share'] * 100:>15.3f}% {row['per_sample_us']:>10.1f} "
                    f"{row['rate_hz']:>7.0f} of {row['wanted_hz']:<6.0f}"
                )
                if interval_ms == 10.0 and not busy:
                    verdict = "meets" if row["share"] <= TARGET_SHARE_AT_10_MS else "MISSES"
                    print(f"{'':>9} {verdict} the target of {TARGET_SHARE_AT_10_MS:.0%} at 10 ms")
    finally:
        for sensor in sensors:
            sensor.close()


if __name__ == "__main__":
    main()
