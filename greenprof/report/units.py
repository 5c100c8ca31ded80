"""Numbers as people read them: joules with SI prefixes, kWh, grams of CO2."""

from __future__ import annotations

import math
from typing import Any

from greenprof.attribute.uncertainty import uncertainty_j

#: Grid carbon intensity assumed when none is given, in grams of CO2 per kWh. Roughly the world
#: average of electricity generation in the early 2020s; a local grid may be 5x lower or 2x higher.
DEFAULT_GRID_G_PER_KWH = 400.0

J_PER_KWH = 3.6e6

_PREFIXES = ((1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"))


def format_si(value: float, unit: str, digits: int = 3) -> str:
    """Return ``value`` with an SI prefix, e.g. ``format_si(1234.0, "J") == "1.23 kJ"``.

    Args:
        value: the number in base units.
        unit: the unit symbol, e.g. ``"J"``, ``"W"``.
        digits: significant digits.
    """
    if not math.isfinite(value):
        return f"{value} {unit}"
    if value == 0:
        return f"0 {unit}"
    magnitude = abs(value)
    for scale, prefix in _PREFIXES:
        if magnitude >= scale * 0.9995:
            return f"{value / scale:.{digits}g} {prefix}{unit}"
    scale, prefix = _PREFIXES[-1]
    return f"{value / scale:.{digits}g} {prefix}{unit}"


def format_energy(energy_j: float) -> str:
    """Return joules with an SI prefix."""
    return format_si(energy_j, "J")


def format_duration(duration_s: float) -> str:
    """Return seconds as ``"12.3 ms"``, ``"4.56 s"`` or ``"1 h 02 min"``."""
    if duration_s >= 3600:
        hours, rest = divmod(duration_s, 3600)
        return f"{int(hours)} h {int(rest // 60):02d} min"
    if duration_s >= 60:
        minutes, rest = divmod(duration_s, 60)
        return f"{int(minutes)} min {int(rest):02d} s"
    return format_si(duration_s, "s")


def format_share(fraction: float) -> str:
    """Return a fraction as a percentage with one decimal."""
    return f"{100.0 * fraction:.1f}%"


def format_plus(energy_j: float, energy_lo_j: float, energy_hi_j: float) -> str:
    """Return ``"±1.2 J"``, or ``""`` when the bounds are equal.

    Equal bounds mean nobody reported an uncertainty, which is not the same as none.
    """
    if energy_hi_j <= energy_lo_j:
        return ""
    return "±" + format_energy(float(uncertainty_j(energy_j, energy_lo_j, energy_hi_j)))


def kwh(energy_j: float) -> float:
    """Return joules in kilowatt-hours."""
    return energy_j / J_PER_KWH


def co2_g(energy_j: float, grid_g_per_kwh: float) -> float:
    """Return grams of CO2 for ``energy_j`` at a grid intensity in g/kWh."""
    return kwh(energy_j) * grid_g_per_kwh


def grid_intensity(meta: dict[str, Any], override_g_per_kwh: float | None = None) -> float:
    """Return the grid intensity to use: the override, else the run's own, else the default."""
    if override_g_per_kwh is not None:
        return float(override_g_per_kwh)
    stored = meta.get("grid_g_per_kwh")
    if isinstance(stored, (int, float)) and not isinstance(stored, bool) and stored >= 0:
        return float(stored)
    return DEFAULT_GRID_G_PER_KWH
