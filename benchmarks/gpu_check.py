"""Everything greenprof assumes about a CUDA machine, measured there in one run of at most 8 min.

Run by hand on a machine with an NVIDIA GPU (not part of the test suite):

    python benchmarks/gpu_check.py [--out DIR] [--device 0]

Parts, each time-boxed, each catching its own errors (recorded in the JSON; the others still run):

* ``nvml``: the energy counter's update period and lag behind load steps, and the counter against
  integrated power (``gpu_nvml.py``);
* ``module_timing``: per-module CUDA time from greenprof against torch.profiler's kernel times,
  for a BERT-base-size ``BertModel`` forward and backward (target: within 5 %);
* ``overhead``: step time under greenprof and under torch.profiler (CPU + CUDA activities)
  against no profiler, in interleaved rounds (median of per-round ratios);
* ``two_streams``: two branches on two CUDA streams, against CUDA events on each stream;
* ``second_device``: a model on the second GPU without ``set_device`` (skipped with one GPU);
* ``calibration``: ``greenprof.profile(calibrate=True)`` on a small BERT training loop.

Writes ``gpu_check.json`` and ``summary.txt`` (what was printed) into ``--out`` (default: ``$OUT``
when set, else ``./gpu_check``). Without CUDA it says so and exits with status 2 at once.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import platform
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

#: The whole run's limit and each part's, in seconds (the parts' sum stays under the whole).
TOTAL_LIMIT_S = 480
PART_LIMITS_S = {
    "nvml": 45,
    "module_timing": 100,
    "overhead": 120,
    "two_streams": 40,
    "second_device": 40,
    "calibration": 100,
}
#: Exit status when the machine has no usable CUDA device.
EXIT_NO_CUDA = 2


class PartTimeout(Exception):
    """A part ran past its time box."""


@contextlib.contextmanager
def time_box(seconds: float) -> Iterator[None]:
    """Raise :class:`PartTimeout` in the main thread once ``seconds`` have passed."""

    def expire(signum: int, frame: object) -> None:
        raise PartTimeout(f"stopped after its time box of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Tee(io.TextIOBase):
    """Writes to the terminal and keeps a copy for ``summary.txt``."""

    def __init__(self, stream) -> None:
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.stream.flush()
        return self.copy.write(text)


def cuda_or_reason() -> str | None:
    """None when a CUDA device can be used; else why not, in one sentence."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        return f"torch sees no CUDA device{hint}; this check needs an NVIDIA GPU"
    return None


def run_part(name: str, part: Callable[[], dict], limit_s: float) -> dict:
    """Run one part in its time box; its result, or the error that stopped it, with its time."""
    print(f"\n== {name} (at most {limit_s:g} s)")
    t0 = time.perf_counter()
    entry: dict = {}
    try:
        with time_box(limit_s):
            entry["result"] = part()
    except PartTimeout as exc:
        entry |= {"timed_out": True, "error": str(exc)}
        print(f"{name}: {exc}")
    except Exception as exc:  # a part's failure is a finding; the other parts still run
        entry["error"] = f"{type(exc).__name__}: {exc}"
        entry["traceback"] = traceback.format_exc()
        print(f"{name}: failed: {entry['error']}")
    finally:
        _release_gpu_memory()
    entry["seconds"] = time.perf_counter() - t0
    return entry


def _release_gpu_memory() -> None:
    import gc

    import torch

    gc.collect()
    torch.cuda.empty_cache()


def parts(args: argparse.Namespace) -> dict[str, Callable[[], dict]]:
    """The parts, by name, in the order they run."""
    import gpu_nvml
    import gpu_timing

    device = args.device
    return {
        "nvml": lambda: gpu_nvml.measure(device, cycles=3, load_s=2.0, idle_s=2.0, size=8192),
        "module_timing": lambda: gpu_timing.module_timing(device, steps=args.steps),
        "overhead": lambda: gpu_timing.overhead(device, rounds=args.rounds),
        "two_streams": lambda: gpu_timing.two_streams(device),
        "second_device": gpu_timing.second_device,
        "calibration": lambda: gpu_timing.calibration(device),
    }


def machine_facts(device: int) -> dict:
    import torch

    import greenprof

    props = torch.cuda.get_device_properties(device)
    return {
        "gpu": props.name,
        "gpu_memory_gib": props.total_memory / 2**30,
        "cuda_devices": torch.cuda.device_count(),
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "greenprof": greenprof.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
    }


def default_out() -> Path:
    return Path(os.environ["OUT"]) if os.environ.get("OUT") else Path("gpu_check")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for the results")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index")
    parser.add_argument("--steps", type=int, default=10, help="BERT steps timed per profiler")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved overhead rounds")
    parser.add_argument("--only", nargs="*", default=None, help="run only these parts")
    args = parser.parse_args(argv)
    out = args.out or default_out()

    reason = cuda_or_reason()
    if reason is not None:
        print(f"gpu_check: nothing measured: {reason}", file=sys.stderr)
        return EXIT_NO_CUDA
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # the parts beside this script
    tee = Tee(sys.stdout)
    report: dict = {"started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    started = time.perf_counter()
    with contextlib.redirect_stdout(tee):
        report["machine"] = machine_facts(args.device)
        print(json.dumps(report["machine"]))
        report["parts"] = {}
        for name, part in parts(args).items():
            if args.only is not None and name not in args.only:
                continue
            left_s = TOTAL_LIMIT_S - (time.perf_counter() - started)
            limit_s = min(PART_LIMITS_S[name], left_s)
            if limit_s < 5:
                report["parts"][name] = {"error": "skipped: the run's time limit was reached"}
                continue
            report["parts"][name] = run_part(name, part, limit_s)
            _write(out, report, tee)  # what is measured so far survives a crash of the next part
        report["seconds"] = time.perf_counter() - started
        print(f"\ngpu_check: {report['seconds']:.0f} s; results in {out}")
    _write(out, report, tee)
    return 0


def _write(out: Path, report: dict, tee: Tee) -> None:
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=float))
    (out / "summary.txt").write_text(tee.copy.getvalue())


if __name__ == "__main__":
    sys.exit(main())
