"""`greenprof run/report/top/compare/export` as users run them: real subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from greenprof.cli import cli
from greenprof.session import FORMAT_VERSION, Session
from greenprof.testing.synthetic import stepped_session, synthetic_session

CONSOLE_SCRIPT = shutil.which("greenprof", path=str(Path(sys.executable).parent))


def greenprof(*args: str, cwd: Path, console_script: bool = False) -> subprocess.CompletedProcess:
    if console_script:
        assert CONSOLE_SCRIPT, "the greenprof console script is not installed next to python"
        command = [CONSOLE_SCRIPT, *args]
    else:
        command = [sys.executable, "-m", "greenprof", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def script(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(source)
    return path


TRAIN = """
import json, sys, torch
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(5):
    loss = model(torch.randn(4, 8)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "name": __name__}))
"""


# ------------------------------------------------------------------------------------ run
def test_run_passes_arguments_untouched_and_writes_the_report(tmp_path) -> None:
    script(tmp_path, "train.py", TRAIN)
    args = [
        "--epochs",
        "1",
        "--out",
        "theirs",
        "-m",
        "x",
    ]  # the script's, though greenprof has some
    done = greenprof(
        "run", "--sensor", "estimate", "--out", "mine", "train.py", *args,
        cwd=tmp_path, console_script=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"argv": ["train.py", *args], "path0": str(tmp_path), "name": "__main__"}
    assert "greenprof: report written to mine/report.html" in done.stderr
    session = Session.load(tmp_path / "mine")
    assert {"0", "2", ""} <= set(session.layers()["module"])
    assert session.meta[
        "command"
    ] == "greenprof run --sensor estimate --out mine train.py " + " ".join(args)


def test_run_tensorboard_writes_event_files_of_the_run(tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    script(tmp_path, "train.py", TRAIN)
    done = greenprof(
        "run",
        "--no-report",
        "--no-calibrate",
        "--out",
        "run",
        "--tensorboard",
        "tb",
        "train.py",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = events.Tags()["scalars"]
    session = Session.load(tmp_path / "run")
    total = [
        t for t in tags if t.endswith("energy_j") and "/layer/" not in t and "/sensor/" not in t
    ]
    assert len(total) == 1
    assert events.Scalars(total[0])[0].value == pytest.approx(session.total_energy_j, rel=1e-5)
    assert events.Scalars(total[0])[0].step == 5


def test_run_keeps_the_exit_status_of_sys_exit(tmp_path) -> None:
    script(tmp_path, "three.py", "import sys\nsys.exit(3)\n")
    done = greenprof(
        "run", "--sensor", "estimate", "--no-report", "--out", "r", "three.py", cwd=tmp_path
    )
    assert done.returncode == 3
    assert Session.load(tmp_path / "r").meta["exit_status"] == 3
    assert not (tmp_path / "r" / "report.html").exists()


def test_run_shows_the_scripts_traceback_and_still_writes_the_report(tmp_path) -> None:
    script(tmp_path, "boom.py", "def fail():\n    raise ValueError('boom')\n\nfail()\n")
    done = greenprof("run", "--sensor", "estimate", "--out", "r", "boom.py", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("Traceback (most recent call last):\n")
    frames = [line for line in done.stderr.splitlines() if line.startswith("  File ")]
    assert len(frames) == 2 and all("boom.py" in frame for frame in frames)
    assert "ValueError: boom" in done.stderr
    assert (tmp_path / "r" / "report.html").is_file()
    assert Session.load(tmp_path / "r").meta["exit_status"] == 1


def test_run_after_ctrl_c_exits_130_and_saves_an_interrupted_run(tmp_path) -> None:
    script(
        tmp_path,
        "interrupt.py",
        "import signal, torch\n"
        "torch.nn.Linear(4, 4)(torch.randn(2, 4))\n"
        # Sent to this thread: os.kill() may hand it to another of the process's threads (one of
        # torch's), after which Python's handler may run only once the next line has.
        "signal.raise_signal(signal.SIGINT)\n"
        "print('not reached')\n",
    )
    done = greenprof("run", "--sensor", "estimate", "--out", "r", "interrupt.py", cwd=tmp_path)
    assert done.returncode == 130
    assert "not reached" not in done.stdout and "KeyboardInterrupt" in done.stderr
    meta = Session.load(tmp_path / "r").meta
    assert meta["interrupted"] is True and meta["exit_status"] == 130
    assert (tmp_path / "r" / "report.html").is_file()


def test_run_of_a_missing_script_is_one_line(tmp_path) -> None:
    done = greenprof("run", "missing.py", cwd=tmp_path, console_script=True)
    assert done.returncode == 2
    assert done.stderr == "greenprof: error: missing.py: no such file\n"
    assert not (tmp_path / "reports").exists()


def test_run_of_a_syntax_error_shows_pythons_own_error(tmp_path) -> None:
    script(tmp_path, "bad.py", "x = 1\ndef f(:\n    pass\n")
    python = subprocess.run(
        [sys.executable, "bad.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    done = greenprof("run", "bad.py", cwd=tmp_path)
    assert done.returncode == python.returncode == 1
    assert done.stderr == python.stderr
    assert not (tmp_path / "reports").exists()


def test_run_module_like_python_m(tmp_path) -> None:
    (tmp_path / "pkg").mkdir()
    script(tmp_path, "pkg/__init__.py", "")
    script(tmp_path, "pkg/train.py", TRAIN)
    done = greenprof(
        "run",
        "--sensor",
        "estimate",
        "--no-report",
        "--out",
        "r",
        "-m",
        "pkg.train",
        "a",
        "-b",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["argv"] == [str(tmp_path / "pkg" / "train.py"), "a", "-b"]
    assert seen["name"] == "__main__" and seen["path0"] == str(tmp_path)
    missing = greenprof("run", "-m", "pkg.nothing", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1


def test_run_with_dataloader_workers_into_the_default_run_dir(tmp_path) -> None:
    script(
        tmp_path,
        "loader.py",
        """
import torch
from torch.utils.data import DataLoader, Dataset

class Squares(Dataset):
    def __len__(self):
        return 64
    def __getitem__(self, i):
        return torch.tensor([float(i)]), torch.tensor([float(i * i)])

if __name__ == "__main__":
    model = torch.nn.Linear(1, 1)
    seen = 0
    for x, y in DataLoader(Squares(), batch_size=8, num_workers=2):
        model(x)
        seen += int(x.sum())
    assert seen == sum(range(64)), seen
    print("ok", seen)
""",
    )
    done = greenprof("run", "--sensor", "estimate", "loader.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"ok {sum(range(64))}"
    (run_dir,) = (tmp_path / "reports").iterdir()
    assert run_dir.name.startswith("loader-") and (run_dir / "report.html").is_file()
    assert Session.load(run_dir).layers()["calls"].max() == 8


# ------------------------------------------------------------------- report/top/compare/export
@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runs")
    before = synthetic_session(duration_s=5.0, n_blocks=2, seed=1)
    layers = before.layers()
    layers.loc[layers["module"] == "head", ["energy_j", "energy_lo_j", "energy_hi_j"]] *= 5
    after = Session(before.meta, layers, before.samples(), before.spans())
    return before.save(root / "before"), after.save(root / "after")


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_report_writes_html(run_dirs, tmp_path) -> None:
    done = invoke(
        "report", str(run_dirs[0]), "-o", str(tmp_path / "r.html"), "--grid-g-per-kwh", "30"
    )
    assert done.exit_code == 0
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "assuming 30 g CO2/kWh" in page


def test_top_prints_the_table(run_dirs) -> None:
    done = invoke("top", str(run_dirs[0]), "-n", "3", "--phase", "backward")
    assert done.exit_code == 0
    lines = done.stdout.splitlines()
    assert "phases: backward" in lines
    assert "optimizer:AdamW" not in done.stdout


def test_top_region_shows_only_that_region_and_names_unknown_ones(tmp_path) -> None:
    session = synthetic_session(duration_s=2.0, n_blocks=2, seed=3)
    layers = session.layers()
    layers.loc[layers["module"] == "head", "region"] = "eval"
    run_dir = Session(session.meta, layers).save(tmp_path / "run")
    done = invoke("top", str(run_dir), "--region", "eval")
    assert done.exit_code == 0
    assert "showing regions: eval" in done.stdout
    assert "  head (" in done.stdout and "blocks.0" not in done.stdout
    assert "regions: " in done.stdout
    outside = invoke("top", str(run_dir), "--region", "")
    assert "  head (" not in outside.stdout and "blocks.0" in outside.stdout
    bad = CliRunner().invoke(cli, ["top", str(run_dir), "--region", "nope"])
    assert bad.exit_code != 0 and "no region 'nope'" in bad.output


def test_top_in_a_real_process(run_dirs) -> None:
    done = greenprof("top", str(run_dirs[0]), cwd=run_dirs[0].parent)
    assert done.returncode == 0 and done.stdout.startswith("greenprof: ")


def test_compare_flags_regressions_and_fails_only_when_asked(run_dirs) -> None:
    before, after = map(str, run_dirs)
    done = invoke("compare", before, after)
    assert done.exit_code == 0
    assert "1 module(s) got worse beyond uncertainty and by more than 5%: head" in done.stdout
    assert invoke("compare", before, after, "--fail-on-regression").exit_code == 1
    assert (
        invoke("compare", before, after, "--fail-on-regression", "--threshold-pct", "500").exit_code
        == 0
    )
    assert invoke("compare", after, before, "--fail-on-regression").exit_code == 0


def test_compare_of_runs_with_no_module_in_common_exits_2_unless_forced(run_dirs, tmp_path):
    other = synthetic_session(duration_s=2.0, n_blocks=1, seed=3)
    layers = other.layers()
    layers["module"] = "other." + layers["module"]
    path = Session(other.meta, layers).save(tmp_path / "other")
    done = invoke("compare", str(run_dirs[0]), str(path))
    assert done.exit_code == 2 and "share no module" in done.stderr and "--force" in done.stderr
    forced = invoke("compare", str(run_dirs[0]), str(path), "--force")
    assert forced.exit_code == 0 and "only the totals compare" in forced.stdout


COSTS = {"embed": 0.002, "fc1": 0.010, "act": 0.0005, "fc2": 0.010, "head": 0.004}


def test_compare_of_a_machine_slower_as_a_whole_passes_and_a_layer_on_its_own_fails(tmp_path):
    before = stepped_session(COSTS, noise_rel=0.1).save(tmp_path / "before")
    slower = {m: 1.3 * c for m, c in COSTS.items()}
    loaded = stepped_session(slower, noise_rel=0.1, seed=1, cpu_per_wall=0.55, load_per_cpu=1.5)
    done = invoke(
        "compare", str(before), str(loaded.save(tmp_path / "loaded")), "--fail-on-regression"
    )
    assert done.exit_code == 0
    assert "machine slower as a whole" in done.stdout and "not a code change" in done.stdout
    slower["fc2"] *= 2
    worse = stepped_session(slower, noise_rel=0.1, seed=1, cpu_per_wall=0.55, load_per_cpu=1.5)
    done = invoke(
        "compare", str(before), str(worse.save(tmp_path / "worse")), "--fail-on-regression"
    )
    assert done.exit_code == 1
    assert "1 module(s) got worse beyond uncertainty and by more than 5%: fc2" in done.stdout


TINY = """
import time

import torch
model = torch.nn.Sequential(torch.nn.Linear(128, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x = torch.randn(64, 128)
start = time.perf_counter()
# Seconds of steps, not a count: each run's windows then span the machine's passing load (other
# tests run beside this one), and a run lasts long enough for many windows on any machine.
while time.perf_counter() - start < 2.0:
    model(x).pow(2).mean().backward()
    opt.step()
    opt.zero_grad()
"""


def test_the_same_script_run_twice_is_no_regression_in_real_processes(tmp_path) -> None:
    path = script(tmp_path, "tiny.py", TINY)
    for name in ("a", "b"):
        done = greenprof("run", "--out", name, "--no-report", str(path), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / name / "steps.csv").is_file()
    done = greenprof("compare", "a", "b", "--fail-on-regression", cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    assert "run-to-run variation measured from each run's steps" in done.stdout


def test_top_says_when_a_phase_did_not_run(tmp_path) -> None:
    session = synthetic_session(duration_s=2.0, n_blocks=1)
    layers = session.layers()
    path = Session(session.meta, layers[layers["phase"] != "optimizer"]).save(tmp_path / "r")
    done = invoke("top", str(path), "--phase", "optimizer")
    assert done.exit_code == 0 and "note: no optimizer phase in this run" in done.stdout
    assert "note:" not in invoke("top", str(path), "--phase", "forward").stdout


def test_help_shows_every_command_description_whole() -> None:
    done = invoke("--help")
    text = "".join(done.stdout.split())  # wrapped lines: compare without whitespace
    for name in ("compare", "export", "optimize", "recommend", "run", "sensors"):
        assert "".join(cli.commands[name].help.split("\n")[0].split()) in text, name
    assert "..." not in done.stdout.split("Commands:")[1]


def test_run_separates_startup_from_the_glue_inside_the_loop(tmp_path) -> None:
    slow_start = script(
        tmp_path,
        "slow_start.py",
        "import time, torch\n"
        "t = time.perf_counter()\n"
        "while time.perf_counter() - t < 0.5:\n"
        "    pass\n"
        "model = torch.nn.Linear(8, 8)\n"
        "for _ in range(20):\n"
        "    model(torch.randn(4, 8))\n",
    )
    done = greenprof("run", "--out", "r", "--sensor", "estimate", str(slow_start), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = Session.load(tmp_path / "r").layers().set_index("module")
    assert rows.loc["(startup)", "time_s"] >= 0.5
    assert rows.loc["(outside modules)", "time_s"] < 0.25
    text = greenprof("top", "r", cwd=tmp_path).stdout
    assert "(startup)" in text


def test_a_refused_sensor_leaves_no_run_directory(tmp_path) -> None:
    train = script(tmp_path, "train.py", TRAIN)
    done = greenprof("run", "--sensor", "nvml", str(train), cwd=tmp_path)
    if done.returncode == 0:
        pytest.skip("NVML is readable here")
    assert done.returncode == 2 and "nvml" in done.stderr.lower()
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())


def test_export_chrome_trace(run_dirs, tmp_path) -> None:
    done = invoke("export", str(run_dirs[0]), "--format", "chrome", "-o", str(tmp_path / "t.json"))
    assert done.exit_code == 0
    events = json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    assert {"X", "C", "M"} == {e["ph"] for e in events}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_tables_as_data_files_read_back_whole(run_dirs, tmp_path, fmt) -> None:
    import pandas as pd

    out = tmp_path / fmt
    done = invoke("export", str(run_dirs[0]), "--format", fmt, "-o", str(out))
    assert done.exit_code == 0, done.output
    session = Session.load(run_dirs[0])
    read = pd.read_csv if fmt == "csv" else pd.read_parquet
    layers = read(out / f"layers.{fmt}")
    assert len(layers) == len(session.layers())
    assert layers["energy_j"].sum() == pytest.approx(session.total_energy_j)
    assert {"module", "phase", "region", "energy_lo_j", "energy_hi_j"} <= set(layers.columns)
    assert len(read(out / f"samples.{fmt}")) == len(session.samples())
    assert len(read(out / f"spans.{fmt}")) == len(session.spans())


# ------------------------------------------------------------------------------ bad input
def _broken(tmp_path: Path, problem: str) -> tuple[Path, str]:
    """Return a broken run directory and the file name its error must mention."""
    run_dir = synthetic_session(duration_s=1.0, n_blocks=1).save(tmp_path / problem)
    if problem == "missing":
        shutil.rmtree(run_dir)
        return run_dir, str(run_dir)
    if problem == "truncated":
        (run_dir / "layers.csv").write_text("")
        return run_dir, "layers.csv"
    meta_path = run_dir / "session.json"
    if problem == "corrupt":
        meta_path.write_text(meta_path.read_text()[:50])
        return run_dir, "session.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    meta_path.write_text(json.dumps(meta))
    return run_dir, "session.json"


@pytest.mark.parametrize("problem", ["missing", "truncated", "corrupt", "newer"])
@pytest.mark.parametrize("command", ["report", "top", "compare", "export"])
def test_bad_run_dirs_give_one_line_naming_the_file(tmp_path, problem, command) -> None:
    run_dir, name = _broken(tmp_path, problem)
    args = [command, str(run_dir)]
    if command == "compare":
        args.insert(1, str(synthetic_session(duration_s=1.0).save(tmp_path / "good")))
    done = invoke(*args)
    assert done.exit_code == 2
    assert done.stderr.startswith("greenprof: error: ") and done.stderr.count("\n") == 1
    assert name in done.stderr
    if problem == "newer":
        assert "Upgrade greenprof" in done.stderr


def test_bad_run_dir_in_a_real_process_has_no_traceback(tmp_path) -> None:
    run_dir, _ = _broken(tmp_path, "corrupt")
    done = greenprof("top", str(run_dir), cwd=tmp_path, console_script=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("greenprof: error: ") and os.fspath(run_dir) in done.stderr
