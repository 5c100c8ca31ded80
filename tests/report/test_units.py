import math

import pytest

from greenprof.attribute.uncertainty import is_noise, uncertainty_j
from greenprof.report.units import (
    DEFAULT_GRID_G_PER_KWH,
    co2_g,
    format_duration,
    format_energy,
    grid_intensity,
    kwh,
)


@pytest.mark.parametrize(
    ("joules", "text"),
    [(0.0, "0 J"), (1234.0, "1.23 kJ"), (0.5, "500 mJ"), (2.5e6, "2.5 MJ"), (999.9, "1 kJ")],
)
def test_format_energy_picks_the_prefix(joules: float, text: str) -> None:
    assert format_energy(joules) == text


def test_format_duration_reads_like_a_clock() -> None:
    assert format_duration(0.0123) == "12.3 ms"
    assert format_duration(75.0) == "1 min 15 s"
    assert format_duration(3725.0) == "1 h 02 min"


def test_kwh_and_co2() -> None:
    assert kwh(3.6e6) == 1.0
    assert co2_g(3.6e6, 400.0) == 400.0


def test_grid_intensity_prefers_override_then_run_then_default() -> None:
    assert grid_intensity({"grid_g_per_kwh": 50}, 20.0) == 20.0
    assert grid_intensity({"grid_g_per_kwh": 50}) == 50.0
    assert grid_intensity({}) == DEFAULT_GRID_G_PER_KWH
    assert grid_intensity({"grid_g_per_kwh": "dirty"}) == DEFAULT_GRID_G_PER_KWH


def test_uncertainty_is_the_wider_side_and_noise_reaches_past_twenty_percent() -> None:
    assert uncertainty_j(10.0, 9.0, 13.0) == 3.0
    assert is_noise(10.0, 9.0, 13.0)  # ±30%
    assert not is_noise(10.0, 9.0, 11.5)  # ±15%
    assert is_noise(1.0, 0.0, 1.0)
    assert not math.isnan(float(uncertainty_j(0.0, 0.0, 0.0)))
