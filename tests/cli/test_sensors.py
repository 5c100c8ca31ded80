import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from greenprof.cli import cli
from greenprof.sensors.estimate import CPU_POWER_ENV


@pytest.fixture
def powercap(tmp_path):
    root = tmp_path / "powercap"
    root.mkdir()
    return root


@pytest.fixture(autouse=True)
def _no_gpu_library(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.delenv(CPU_POWER_ENV, raising=False)


def run(*args):
    return CliRunner().invoke(cli, ["sensors", "--seconds", "0.05", *args])


def test_lists_the_estimate_and_why_the_others_are_missing(powercap):
    result = run("--powercap-root", str(powercap), "--cpu-power-w", "80")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    (estimate,) = [line for line in lines if "cpu-estimate" in line and "ESTIMATED" in line]
    assert " W" in estimate and f"{80 / os.cpu_count():g} W per busy logical CPU" in estimate
    assert "Not available:" in lines
    assert any(line.split()[:1] == ["nvml"] for line in lines)
    assert "pip install nvidia-ml-py" in result.output
    assert f"no RAPL package zone under {powercap}" in result.output
    assert "modprobe intel_rapl_msr" in result.output
    assert lines[-1] == "Profiling uses by default: cpu-estimate"


def test_readable_rapl_is_measured_and_replaces_the_estimate(powercap):
    zone = powercap / "intel-rapl:0"
    zone.mkdir()
    for file, value in [("name", "package-0"), ("energy_uj", "0"), ("max_energy_range_uj", "99")]:
        (zone / file).write_text(value + "\n")

    result = run("--powercap-root", str(powercap))

    assert result.exit_code == 0, result.output
    assert any(
        "rapl:package-0" in line and "MEASURED" in line for line in result.output.splitlines()
    )
    assert result.output.splitlines()[-1] == "Profiling uses by default: rapl:package-0"


def test_bad_rated_power_in_environment_is_a_clean_error(powercap, monkeypatch):
    monkeypatch.setenv(CPU_POWER_ENV, "lots")

    result = run("--powercap-root", str(powercap))

    assert result.exit_code == 1
    assert CPU_POWER_ENV in result.output and "Traceback" not in result.output


def test_non_positive_duration_is_refused():
    result = run("--seconds", "0")
    assert result.exit_code == 2 and "--seconds" in result.output


@pytest.mark.parametrize("how", ["module", "script"])
def test_real_command(powercap, how):
    script = Path(sys.executable).with_name("greenprof")
    if how == "script" and not script.exists():
        pytest.skip("console script not installed next to this interpreter")
    command = [sys.executable, "-m", "greenprof"] if how == "module" else [str(script)]
    env = {**os.environ, CPU_POWER_ENV: "40"}

    done = subprocess.run(
        [*command, "sensors", "--seconds", "0.05", "--powercap-root", str(powercap)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert "cpu-estimate" in done.stdout and "ESTIMATED" in done.stdout
    assert "rapl" in done.stdout and "fix:" in done.stdout
