"""Several processes under torch.distributed.run (gloo, DDP on CPU): real launchers, real ranks."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from greenprof.errors import SessionFormatError
from greenprof.launch import merge_parts, rank_info
from greenprof.session import Session
from greenprof.testing.synthetic import synthetic_session

DDP = """
import os, sys, torch, torch.distributed as dist
from torch import nn
dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
model = nn.parallel.DistributedDataParallel(net)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range(int(sys.argv[1])):
    if rank == 1 and os.environ.get("DIE_AT") == str(step):
        os._exit(3)
    model(torch.randn(8, 16)).pow(2).mean().backward()
    opt.step()
    opt.zero_grad()
dist.destroy_process_group()
"""


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
    )


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "ddp.py"
    path.write_text(DDP)
    return path


WANDB = importlib.util.find_spec("wandb") is not None


def test_greenprof_run_nproc_per_node_merges_both_ranks(script, tmp_path) -> None:
    # With wandb installed the same (costly) run also checks --wandb: one W&B run, the merged one.
    wandb_args = ["--wandb"] if WANDB else []
    done = run(
        [
            "-m",
            "greenprof",
            "run",
            "--nproc-per-node",
            "2",
            "--sensor",
            "estimate",
            "--no-report",
            *wandb_args,
            "--out",
            "run",
            script.name,
            "4",
        ],
        tmp_path,
        WANDB_MODE="offline",
        WANDB_DIR=str(tmp_path),
        WANDB_SILENT="true",
    )
    assert done.returncode == 0, done.stderr
    session = Session.load(tmp_path / "run")
    if WANDB:
        from wandb_records import logged, only_run

        _history, summary = logged(only_run(tmp_path))  # one run: no rank logged its own
        assert summary["greenprof/estimated_energy_j"] == pytest.approx(session.total_energy_j)
        assert summary["greenprof/rank/1/estimated_energy_j"] == 0.0
    assert session.meta["ranks"] == [0, 1] and session.meta["missing_ranks"] == []
    by_rank = session.by_rank()
    assert list(by_rank["rank"]) == [0, 1]
    assert list(by_rank["steps"]) == [4, 4]
    # The node's CPU belongs to local rank 0 alone: nothing is counted twice.
    assert by_rank["energy_j"].iloc[0] > 0 and by_rank["energy_j"].iloc[1] == 0
    assert [s["rank"] for s in session.meta["sensors"]] == [0]
    assert session.total_energy_j == pytest.approx(by_rank["energy_j"].sum())
    layers = session.layers()
    assert layers["energy_j"].sum() == pytest.approx(session.total_energy_j)
    linear = layers[(layers["module"] == "module.0") & (layers["phase"] == "forward")]
    assert int(linear["calls"].sum()) == 2 * 4  # both ranks' calls
    assert not any("owns no sensor" in w for w in session.warnings)
    per_rank = session.layers(by_rank=True)
    mine = per_rank[(per_rank["module"] == "module.0") & (per_rank["phase"] == "forward")]
    assert dict(zip(mine["rank"], mine["calls"], strict=True)) == {0: 4, 1: 4}
    assert per_rank["energy_j"].sum() == pytest.approx(session.total_energy_j)


def test_torchrun_module_form_and_a_killed_rank_is_named(script, tmp_path) -> None:
    done = run(
        [
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "-m",
            "greenprof",
            "run",
            "--sensor",
            "estimate",
            "--no-report",
            "--out",
            "run",
            script.name,
            "4",
        ],
        tmp_path,
        DIE_AT="2",
    )
    assert done.returncode != 0  # the launcher's verdict
    session = Session.load(tmp_path / "run")
    assert session.meta["ranks"] == [0] and session.meta["missing_ranks"] == [1]
    assert "rank(s) 1 of 2 wrote no part" in session.warnings[0]
    assert session.by_rank()["energy_j"].iloc[0] > 0


def test_a_rank_killed_under_nproc_per_node_is_named_in_the_report(script, tmp_path) -> None:
    done = run(
        ["-m", "greenprof", "run", "--nproc-per-node", "2", "--sensor", "estimate"]
        + ["--no-calibrate", "--out", "run", script.name, "4"],
        tmp_path,
        DIE_AT="2",
    )
    assert done.returncode == 1  # torch.distributed.run's status when a rank failed
    session = Session.load(tmp_path / "run")
    assert session.meta["ranks"] == [0] and session.meta["missing_ranks"] == [1]
    assert session.warnings[0].startswith("rank(s) 1 of 2 wrote no part")
    page = (tmp_path / "run" / "report.html").read_text()
    ranks = page.split("<h2>Ranks</h2>", 1)[1].split("</section>", 1)[0]
    assert "<td>1</td><td></td><td>wrote no part</td>" in ranks
    assert "Rank(s) 1 of 2 wrote no part" in ranks


def test_launcher_arguments_torch_rejects_exit_2_and_write_nothing(script, tmp_path) -> None:
    done = run(
        [
            "-m",
            "greenprof",
            "run",
            "--nproc-per-node",
            "2",
            "--launcher-arg=--no-such-option",
            "--out",
            "run",
            script.name,
            "1",
        ],
        tmp_path,
    )
    assert done.returncode == 2
    assert "unrecognized arguments: --no-such-option" in done.stderr
    assert not (tmp_path / "run").exists()


def test_several_ranks_without_out_is_a_clear_error(script, tmp_path) -> None:
    done = run(["-m", "greenprof", "run", script.name, "1"], tmp_path, WORLD_SIZE="2", RANK="1")
    assert done.returncode != 0
    assert "--out DIR" in done.stderr


def test_parts_of_different_commands_are_refused(tmp_path) -> None:
    for rank, command in enumerate(["greenprof run a.py", "greenprof run b.py"]):
        part = synthetic_session(duration_s=1.0, n_blocks=1, seed=rank)
        part.meta.update(command=command, rank=rank, world_size=2)
        part.save(tmp_path / f"rank-{rank}")
    with pytest.raises(SessionFormatError, match="different commands"):
        merge_parts(tmp_path)
    with pytest.raises(SessionFormatError, match="no rank parts"):
        merge_parts(tmp_path / "rank-0")


def merged_parts(tmp_path: Path, ranks: int = 2) -> Session:
    for rank in range(ranks):
        part = synthetic_session(duration_s=1.0 + rank, n_blocks=1, seed=rank)
        part.meta.update(command="greenprof run a.py", rank=rank, world_size=ranks)
        part.save(tmp_path / f"rank-{rank}")
    merged = merge_parts(tmp_path)
    merged.save(tmp_path)
    return merged


def test_the_merged_run_keeps_each_ranks_rows(tmp_path) -> None:
    merged = merged_parts(tmp_path)
    loaded = Session.load(tmp_path)
    per_rank = loaded.layers(by_rank=True)
    assert list(per_rank.columns[:2]) == ["rank", "module"]
    assert sorted(set(per_rank["rank"])) == [0, 1]
    for rank in (0, 1):
        part = Session.load(tmp_path / f"rank-{rank}")
        rows = per_rank[per_rank["rank"] == rank]
        assert rows["energy_j"].sum() == pytest.approx(part.layers()["energy_j"].sum())
        assert len(rows) == len(part.layers())
    assert loaded.layers()["energy_j"].sum() == pytest.approx(per_rank["energy_j"].sum())
    assert merged.layers(by_rank=True).equals(per_rank)


def test_top_and_export_by_rank(tmp_path) -> None:
    from click.testing import CliRunner

    from greenprof.cli import cli

    merged_parts(tmp_path)
    top = CliRunner().invoke(cli, ["top", str(tmp_path), "--by-rank", "-n", "4"])
    assert top.exit_code == 0, top.output
    table = top.output.split("rank  energy", 1)[1].splitlines()[2:6]
    assert {line.split()[0] for line in table} <= {"0", "1"} and len(table) == 4
    out = tmp_path / "csv"
    done = CliRunner().invoke(
        cli, ["export", str(tmp_path), "--format", "csv", "--by-rank"] + ["-o", str(out)]
    )
    assert done.exit_code == 0, done.output
    import pandas as pd

    exported = pd.read_csv(out / "layers.csv")
    assert exported.columns[0] == "rank" and sorted(set(exported["rank"])) == [0, 1]
    chrome = CliRunner().invoke(cli, ["export", str(tmp_path), "--format", "chrome", "--by-rank"])
    assert chrome.exit_code == 2 and "--by-rank applies to the table formats" in chrome.output


def test_a_single_process_is_its_own_rank() -> None:
    session = synthetic_session(duration_s=1.0, n_blocks=1)
    rows = session.layers(by_rank=True)
    assert set(rows["rank"]) == {0} and len(rows) == len(session.layers())


def test_rank_info_reads_the_launchers_environment() -> None:
    assert rank_info({}) is None
    assert rank_info({"WORLD_SIZE": "1", "RANK": "0"}) is None
    info = rank_info(
        {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "TORCHELASTIC_RUN_ID": "none"}
    )
    assert (info.rank, info.world_size, info.local_rank, info.run_id) == (3, 4, 1, None)
