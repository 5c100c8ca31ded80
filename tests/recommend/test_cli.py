"""``greenprof recommend`` and ``greenprof optimize`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from greenprof.session import LAYER_COLUMNS, Session

TASK = """
import torch
from torch import nn

def make_task():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64)).eval()
    x = torch.randn(32, 64)

    def workload(m):
        torch.set_num_threads(1)
        with torch.inference_mode():
            for _ in range(5):
                m(x)

    return {"model": model, "workload": workload, "evaluate": lambda m: 1.0, "exclude": ["2"]}

def wrong():
    return (1, 2)

def not_a_model():
    return object(), print, print
"""


def greenprof(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "greenprof", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def task_file(tmp_path):
    path = tmp_path / "task.py"
    path.write_text(textwrap.dedent(TASK))
    return path


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nothere.py:make_task", "nothere.py: no such file"),
        ("task.py:missing", "has no function 'missing'"),
        ("task.py", "expected FILE.py:FUNCTION"),
        ("task.py:wrong", "must return (model, workload, evaluate)"),
        ("task.py:not_a_model", "model must be a torch.nn.Module"),
    ],
)
def test_optimize_bad_task_is_one_line_and_exit_2(task_file, spec, message):
    done = greenprof("optimize", spec, cwd=task_file.parent)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("greenprof:")]
    assert len(lines) == 1 and message in lines[0]
    assert "Traceback" not in done.stderr


def test_optimize_writes_the_report(task_file):
    out = task_file.parent / "out"
    done = greenprof(
        "optimize", "task.py:make_task", "--budget", "2", "--profile-s", "0.05",
        "--max-metric-drop", "1%", "--out", str(out), cwd=task_file.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "energy per workload call" in done.stdout and "estimated" in done.stdout.lower()
    assert (out / "report.html").is_file()
    history = json.loads((out / "history.json").read_text())
    assert len(history["history"]) == 2
    assert all("2" not in step["targets"] for step in history["history"])
    assert history["allowed_drop"] == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("objective", "message"),
    [
        ("per-joule", "objective 'per-joule': choose one of auto, j-per-call, j-per-token"),
        ("j-per-token", "the workload generated no new tokens"),
    ],
)
def test_optimize_objective_that_cannot_work_is_one_line_and_exit_2(task_file, objective, message):
    done = greenprof(
        "optimize", "task.py:make_task", "--objective", objective, "--profile-s", "0.05",
        "--out", str(task_file.parent / "out"), cwd=task_file.parent,
    )  # fmt: skip
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("greenprof:")]
    assert len(lines) == 1 and message in lines[0]
    assert "Traceback" not in done.stderr


def test_recommend_ranks_from_a_saved_run(tmp_path):
    rows = [
        ("", "Net", "forward", 10, 0.01, 0.1, 0.1, 0.1),
        ("encoder.0.ffn", "Linear", "forward", 10, 0.5, 5.0, 4.5, 5.5),
        ("encoder.1.ffn", "Linear", "forward", 10, 0.5, 5.0, 4.5, 5.5),
        ("act", "GELU", "forward", 10, 0.1, 1.0, 0.9, 1.1),
    ]
    Session({"sensors": []}, pd.DataFrame(rows, columns=LAYER_COLUMNS)).save(tmp_path / "run")
    done = greenprof("recommend", str(tmp_path / "run"), "--exclude", "encoder.1.ffn", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "int8 dynamic" in done.stdout and "no model given" in done.stdout
    assert "J (estimated)" in done.stdout
    assert "encoder.1.ffn" not in done.stdout


def test_recommend_on_a_missing_run_is_exit_2(tmp_path):
    done = greenprof("recommend", str(tmp_path / "nope"), cwd=tmp_path)
    assert done.returncode == 2 and "no such run directory" in done.stderr
