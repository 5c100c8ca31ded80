"""W&B logging through the real wandb package, offline, read back from the run's own files."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import greenprof
from greenprof.cli import cli
from greenprof.errors import ConfigError
from greenprof.sensors import ReplaySensor
from greenprof.testing.synthetic import synthetic_session

wandb = pytest.importorskip("wandb")
from wandb_records import logged, only_run  # noqa: E402


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch) -> Iterator[Path]:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    yield tmp_path
    wandb.teardown()  # wandb reads its environment once per process: the next test's is new


def test_a_session_is_logged_with_totals_per_step_and_top_layers(offline) -> None:
    session = synthetic_session(duration_s=2.0, n_blocks=2, seed=4)
    from greenprof.report.wandb import log_wandb

    run_id = log_wandb(session, "energy")
    run = only_run(offline)
    assert run.name.endswith(run_id)
    history, summary = logged(run)
    kind = "estimated_" if session.estimated else ""
    assert history[f"greenprof/{kind}energy_j"] == pytest.approx(session.total_energy_j)
    assert history[f"greenprof/{kind}energy_lo_j"] <= session.total_energy_j
    steps = session.meta["steps"]
    assert history[f"greenprof/{kind}energy_per_step_j"] == pytest.approx(
        session.total_energy_j / steps
    )
    top = session.by_module()["module"].iloc[0]
    top_j = session.by_module()["energy_j"].iloc[0]
    assert history[f"greenprof/layer/{top}_{kind}j"] == pytest.approx(top_j)
    assert summary[f"greenprof/{kind}energy_j"] == pytest.approx(session.total_energy_j)
    table_file = run / "files" / history["greenprof/top_layers/path"]
    table = json.loads(table_file.read_text())
    assert table["columns"][:3] == ["module", "type", "energy_j"]
    assert table["data"][0][0] == top and table["data"][0][2] == pytest.approx(top_j)
    assert len(table["data"]) == min(10, len(session.by_module()))


def test_profile_logs_into_the_active_run_and_leaves_it_open(offline) -> None:
    sensor = ReplaySensor([0.0, 3600.0], [0.0, 50.0 * 3600.0], name="const")
    model = torch.nn.Linear(4, 2)
    run = wandb.init(project="mine")
    try:
        run.log({"loss": 1.0})
        with greenprof.profile(sensors=[sensor], wandb=True) as prof:
            model(torch.randn(3, 4)).sum().backward()
        run.log({"loss": 0.5})  # still the user's, still open
    finally:
        run.finish()
    history, summary = logged(only_run(offline))
    assert summary["greenprof/energy_j"] == pytest.approx(prof.session.total_energy_j)
    assert summary["loss"] == 0.5
    assert "greenprof/estimated_energy_j" not in summary  # a measured sensor


def test_profile_without_wandb_installed_fails_before_running(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ConfigError, match=r"pip install 'greenprof\[wandb\]'"):
        greenprof.profile(wandb=True)


def test_run_wandb_without_wandb_installed_is_a_clear_error(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    script = tmp_path / "s.py"
    script.write_text("print('ran')\n")
    done = CliRunner().invoke(cli, ["run", "--wandb", "--out", str(tmp_path / "r"), str(script)])
    assert done.exit_code == 2
    assert "--wandb needs the wandb package: pip install 'greenprof[wandb]'" in done.output
    assert "ran" not in done.output and not (tmp_path / "r").exists()


def test_greenprof_run_wandb_logs_the_run(offline, tmp_path) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        "import torch\nm = torch.nn.Linear(8, 4)\n"
        "for _ in range(3):\n    m(torch.randn(16, 8)).sum().backward()\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "greenprof", "run", "--wandb", "--sensor", "estimate"]
        + ["--no-report", "--no-calibrate", "--out", "run", script.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    session = greenprof.Session.load(tmp_path / "run")
    _history, summary = logged(only_run(offline))
    assert summary["greenprof/estimated_energy_j"] == pytest.approx(session.total_energy_j)
    assert summary["greenprof/duration_s"] == pytest.approx(session.duration_s)


def test_the_merged_run_is_logged_once_and_not_before_every_node_ended(offline, tmp_path) -> None:
    from greenprof.cli.run import _log_merged_to_wandb, _several_nodes
    from greenprof.launch import merge_parts

    run_dir = tmp_path / "run"
    part = synthetic_session(duration_s=1.0, n_blocks=1)
    part.meta.update(command="c", rank=0, world_size=2)
    part.save(run_dir / "rank-0")
    merge_parts(run_dir).save(run_dir)  # rank 1, on another node, is still running
    assert _several_nodes(("--nnodes=2",)) and _several_nodes(("--nnodes", "2:4"))
    assert not _several_nodes(("--nnodes=1",)) and not _several_nodes(())
    _log_merged_to_wandb(run_dir, several_nodes=True)
    assert not (offline / "wandb").exists()
    _log_merged_to_wandb(run_dir, several_nodes=False)  # one node: logged, gap and all
    _log_merged_to_wandb(run_dir, several_nodes=False)  # the second launcher finds it claimed
    _history, summary = logged(only_run(offline))
    assert summary["greenprof/energy_j"] == pytest.approx(part.total_energy_j)
