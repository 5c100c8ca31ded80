"""`greenprof run` stopped by signals, as a scheduler or a user stops it: real subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from greenprof.session import Session

#: Trains until stopped; says "ready" once modules have run and the sensors had time to count.
LOOP = """
import torch
model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
x = torch.randn(32, 64)
for _ in range(200):
    model(x).sum().backward()
print("ready", flush=True)
while True:
    model(x).sum().backward()
"""


def start(tmp_path: Path) -> subprocess.Popen[str]:
    (tmp_path / "loop.py").write_text(LOOP)
    command = [sys.executable, "-m", "greenprof", "run", "--sensor", "estimate", "--out", "r"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [*command, "loop.py"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # blocks until the script has run its first steps
    assert line == "ready\n", process.communicate(timeout=60)
    return process


def test_sigterm_saves_the_run_and_exits_143(tmp_path) -> None:
    process = start(tmp_path)

    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=300)

    assert process.returncode == 143, err
    assert "stopped by signal 15" in err and "Traceback" not in err
    session = Session.load(tmp_path / "r")
    assert session.meta["exit_status"] == 143 and session.meta["interrupted"] is True
    assert session.total_energy_j > 0
    layers = session.layers()
    linear = layers[(layers["type"] == "Linear") & (layers["phase"] == "forward")]
    assert set(linear["module"]) == {"0", "2"} and (linear["calls"] >= 200).all()
    assert layers["energy_j"].sum() == pytest.approx(session.total_energy_j)
    # A preempted job has seconds left: no replays after the signal.
    assert session.meta["calibration"]["calibrated"] is False
    assert (
        session.meta["calibration"]["note"]
        == "not calibrated: the profiled code was stopped by a signal"
    )
    assert (tmp_path / "r" / "report.html").is_file()
