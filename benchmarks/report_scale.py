"""How big and how slow is the report of a long run?

Builds a synthetic session of a 1-hour run sampled every 10 ms (two sensors, a 24-block model),
saves and reloads it as a run directory, renders the HTML report, and opens it in headless
Chromium when that is installed. Targets: report < 5 MB, opens in < 3 s.

    python benchmarks/report_scale.py [--duration-s 3600] [--interval-ms 10] [--blocks 24]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from greenprof.report.html import write_html
from greenprof.session import Session
from greenprof.testing.browser import find_chromium, headless_chromium, open_report
from greenprof.testing.synthetic import synthetic_session

MAX_REPORT_BYTES = 5_000_000
MAX_OPEN_S = 3.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=3600.0)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    parser.add_argument("--blocks", type=int, default=24)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        return run(Path(scratch), args.duration_s, args.interval_ms / 1000.0, args.blocks)


def run(scratch: Path, duration_s: float, interval_s: float, blocks: int) -> int:
    started = time.perf_counter()
    session = synthetic_session(duration_s, interval_s, blocks)
    print(
        f"session: {duration_s:g} s at {interval_s * 1000:g} ms, {len(session.samples())} samples, "
        f"{len(session.layers())} layer rows, {len(session.spans())} spans "
        f"(built in {time.perf_counter() - started:.2f} s)"
    )
    started = time.perf_counter()
    session = Session.load(session.save(scratch / "run"))
    print(f"save + load run dir: {time.perf_counter() - started:.2f} s")
    started = time.perf_counter()
    report = write_html(session, scratch / "run" / "report.html")
    size = report.stat().st_size
    print(f"render: {time.perf_counter() - started:.2f} s, report {size / 1e6:.2f} MB")
    ok = size < MAX_REPORT_BYTES
    if find_chromium() is None:
        print("open: skipped (chromium and chromedriver not installed; see `make browser`)")
    else:
        with headless_chromium(scratch / "chromium-profile") as driver:
            cold_s = open_report(driver, report)  # pays for starting the renderer too
            open_s = open_report(driver, report)
        print(
            f"open in headless Chromium (load + images decoded): {open_s:.2f} s,"
            f" first {cold_s:.2f} s"
        )
        open_s = max(open_s, cold_s)
        ok = ok and open_s < MAX_OPEN_S
    print(
        "within targets"
        if ok
        else f"OVER TARGET (< {MAX_REPORT_BYTES / 1e6:g} MB, < {MAX_OPEN_S:g} s)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
