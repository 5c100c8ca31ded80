"""The runner in-process: argv/path handling, exit statuses, traceback trimming, run dirs."""

import json
import sys
from pathlib import Path

import pytest

from greenprof import runner
from greenprof.errors import ConfigError
from greenprof.session import Session


def write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return path


def options(tmp_path: Path, **overrides: object) -> runner.RunOptions:
    settings = {"sensors": ["estimate"], "out": tmp_path / "run", "report": False}
    settings.update(overrides)
    return runner.RunOptions(**settings)


def test_script_sees_python_like_argv_and_path_and_both_are_restored(tmp_path) -> None:
    script = write(
        tmp_path / "app" / "show.py",
        "import json, sys\n"
        "json.dump({'argv': sys.argv, 'path0': sys.path[0], 'name': __name__},"
        " open(sys.argv[1], 'w'))\n",
    )
    seen = tmp_path / "seen.json"
    argv, path = list(sys.argv), list(sys.path)
    result = runner.run(
        runner.Target.script(str(script), [str(seen), "--lr", "3"]), options(tmp_path)
    )
    assert (sys.argv, sys.path) == (argv, path)
    got = json.loads(seen.read_text())
    assert got == {
        "argv": [str(script), str(seen), "--lr", "3"],
        "path0": str(script.parent),
        "name": "__main__",
    }
    assert result.exit_status == 0
    saved = Session.load(result.run_dir)
    assert saved.meta["exit_status"] == 0 and saved.meta["interrupted"] is False
    assert saved.meta["command"] == f"greenprof run {script} {seen} --lr 3"


@pytest.mark.parametrize(
    ("ending", "status"),
    [
        ("sys.exit(3)", 3),
        ("sys.exit()", 0),
        ("sys.exit('bad input')", 1),
        ("raise KeyError('k')", 1),
    ],
)
def test_exit_status_is_the_scripts(tmp_path, capsys, ending, status) -> None:
    script = write(tmp_path / "end.py", f"import sys\n{ending}\n")
    argv = list(sys.argv)
    result = runner.run(runner.Target.script(str(script)), options(tmp_path))
    assert result.exit_status == status
    assert Session.load(result.run_dir).meta["exit_status"] == status
    assert sys.argv == argv
    err = capsys.readouterr().err
    if "raise" in ending:
        assert "KeyError: 'k'" in err
    if "bad input" in ending:
        assert err.startswith("bad input\n")


def test_traceback_starts_at_the_script(tmp_path, capsys) -> None:
    script = write(tmp_path / "boom.py", "def f():\n    raise ValueError('boom')\nf()\n")
    runner.run(runner.Target.script(str(script)), options(tmp_path))
    err = capsys.readouterr().err
    frames = [line for line in err.splitlines() if line.startswith("  File ")]
    assert len(frames) == 2 and all("boom.py" in frame for frame in frames)
    assert err.startswith("Traceback (most recent call last):\n") and "ValueError: boom" in err


def test_report_written_unless_disabled(tmp_path) -> None:
    script = write(tmp_path / "ok.py", "x = 1\n")
    result = runner.run(runner.Target.script(str(script)), options(tmp_path, report=True))
    assert result.report == result.run_dir / "report.html" and result.report.is_file()


def test_grid_intensity_is_stored_with_the_run(tmp_path) -> None:
    script = write(tmp_path / "ok.py", "x = 1\n")
    result = runner.run(runner.Target.script(str(script)), options(tmp_path, grid_g_per_kwh=55.0))
    assert Session.load(result.run_dir).meta["grid_g_per_kwh"] == 55.0


def test_check_finds_missing_files_modules_and_syntax_errors(tmp_path, monkeypatch) -> None:
    with pytest.raises(ConfigError, match="nothere.py: no such file"):
        runner.check(runner.Target.script(str(tmp_path / "nothere.py")))
    with pytest.raises(SyntaxError):
        runner.check(runner.Target.script(str(write(tmp_path / "bad.py", "def f(:\n"))))
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "tool" / "__init__.py", "")
    write(tmp_path / "tool" / "__main__.py", "print('tool')\n")
    write(tmp_path / "tool" / "broken.py", "1 +\n")
    runner.check(runner.Target.module("tool"))  # a package runs its __main__
    with pytest.raises(SyntaxError):
        runner.check(runner.Target.module("tool.broken"))
    with pytest.raises(ConfigError, match="no_such_module"):
        runner.check(runner.Target.module("no_such_module"))


def test_default_run_dir_is_named_after_the_script_and_never_reused(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = runner.run_dir_for(runner.Target.script("train.py"), None)
    assert first.parent == Path("reports") and first.name.startswith("train-")
    first.mkdir(parents=True)
    second = runner.run_dir_for(runner.Target.script("other/train.py"), None)
    assert second != first and second.name.startswith("train-")
    assert runner.run_dir_for(runner.Target.module("pkg.main"), None).name.startswith("pkg.main-")


def test_a_script_changing_directory_does_not_move_the_run_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    script = write(tmp_path / "wander.py", "import os\nos.chdir('elsewhere')\n")
    result = runner.run(runner.Target.script(str(script)), options(tmp_path, out=Path("run")))
    assert Path.cwd() == tmp_path
    assert result.run_dir == tmp_path / "run" and (tmp_path / "run" / "session.json").is_file()


def test_an_unusable_out_fails_before_the_script_runs(tmp_path) -> None:
    (tmp_path / "taken").write_text("a file")
    marker = tmp_path / "ran"
    script = write(tmp_path / "mark.py", f"open({str(marker)!r}, 'w').close()\n")
    with pytest.raises(ConfigError, match="cannot create the run directory"):
        runner.run(runner.Target.script(str(script)), options(tmp_path, out=tmp_path / "taken"))
    assert not marker.exists()


def test_second_ctrl_c_during_attribution_still_saves_the_sensor_totals(
    tmp_path, capsys, monkeypatch
) -> None:
    from greenprof.profiler import core

    def ctrl_c(self, table, meta):
        raise KeyboardInterrupt  # the second Ctrl-C, while the energy is split between layers

    monkeypatch.setattr(core.profile, "_build_session", ctrl_c)
    script = write(
        tmp_path / "stop.py",
        "import torch\n"
        "model = torch.nn.Linear(64, 64)\n"
        "for _ in range(300):\n"
        "    model(torch.randn(64, 64))\n"
        "raise KeyboardInterrupt  # the first Ctrl-C\n",
    )
    result = runner.run(runner.Target.script(str(script)), options(tmp_path, report=True))

    assert result.exit_status == 130
    saved = Session.load(result.run_dir)
    assert saved.meta["interrupted"] is True and saved.meta["exit_status"] == 130
    assert any("attribution was interrupted" in w for w in saved.warnings)
    (sensor,) = saved.meta["sensors"]
    assert sensor["name"] == "cpu-estimate" and sensor["measured"] is False
    assert saved.total_energy_j == pytest.approx(sensor["energy_j"]) and saved.total_energy_j > 0
    assert len(saved.samples()) > 1  # the raw series, as measured
    assert result.report is not None and result.report.is_file()
    assert "saving the sensors' totals" in capsys.readouterr().err


def test_sigterm_handler_is_removed_after_the_run(tmp_path) -> None:
    import signal

    before = signal.getsignal(signal.SIGTERM)
    script = write(
        tmp_path / "seen.py",
        "import signal, json, sys\n"
        "json.dump(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, open(sys.argv[1], 'w'))\n",
    )
    runner.run(runner.Target.script(str(script), [str(tmp_path / "seen.json")]), options(tmp_path))
    assert json.loads((tmp_path / "seen.json").read_text()) is False  # a handler while it ran
    assert signal.getsignal(signal.SIGTERM) is before
