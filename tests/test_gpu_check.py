"""benchmarks/gpu_check.py where there is no GPU: a clear refusal, and its parsing of traces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_without_cuda_it_says_why_and_exits_2_writing_nothing(tmp_path) -> None:
    out = tmp_path / "results"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_check.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "gpu_check: nothing measured: torch sees no CUDA device" in done.stderr
    assert "CUDA_VISIBLE_DEVICES=''" in done.stderr and "needs an NVIDIA GPU" in done.stderr
    assert not out.exists()


@pytest.fixture
def gpu_timing(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gpu_timing

    return gpu_timing


def test_module_times_from_a_trace_are_the_spans_and_the_kernels_inside(gpu_timing, tmp_path):
    trace = tmp_path / "trace.json"
    events = [
        {"cat": "gpu_user_annotation", "name": "fwd::encoder.layer.0", "ts": 100, "dur": 50},
        {"cat": "gpu_user_annotation", "name": "fwd::encoder.layer.0", "ts": 300, "dur": 50},
        {"cat": "kernel", "name": "gemm", "ts": 100, "dur": 20},
        {"cat": "kernel", "name": "gemm", "ts": 140, "dur": 20},  # half outside the range
        {"cat": "kernel", "name": "gemm", "ts": 310, "dur": 30},
        {"cat": "kernel", "name": "other", "ts": 200, "dur": 40},  # in no range
        {"cat": "cpu_op", "name": "fwd::encoder.layer.0", "ts": 0, "dur": 999},
    ]
    trace.write_text(json.dumps({"traceEvents": events}))

    measured = gpu_timing.profiler_module_ms(trace, steps=2)

    assert measured == {
        "fwd::encoder.layer.0": {
            "span_ms": pytest.approx(0.05),
            "kernel_ms": pytest.approx((20 + 10 + 30) / 1e3 / 2),
        }
    }


def test_a_failing_part_is_recorded_and_the_next_runs(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gpu_check

    def broken() -> dict:
        raise RuntimeError("no such kernel")

    failed = gpu_check.run_part("broken", broken, 30)
    fine = gpu_check.run_part("fine", lambda: {"ratio": 1.01}, 30)

    assert failed["error"] == "RuntimeError: no such kernel" and "traceback" in failed
    assert fine["result"] == {"ratio": 1.01} and "error" not in fine
