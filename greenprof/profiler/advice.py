"""The session's warnings: what the user should know about how far the figures can be trusted."""

from __future__ import annotations

from greenprof.attribute.fit import TIME_SPLIT, Attribution
from greenprof.schema import PHASES, TimeTable

#: At most this many "layer not resolved" warnings are listed one by one.
MAX_RESOLUTION_WARNINGS = 20


def session_warnings(
    sampler_warnings: list[str],
    hook_inconsistencies: int,
    table: TimeTable,
    result: Attribution,
    names: list[tuple[str, str]],
) -> list[str]:
    """Every warning of a finished profile, the sampler's first (one line per failed sensor)."""
    out = list(sampler_warnings)
    estimated = [r.name for r in result.sensors if not r.measured]
    if estimated:
        out.append(
            "ESTIMATED energy from " + ", ".join(estimated) + ": no hardware counter was readable; "
            "figures come from CPU utilisation x rated power (see `greenprof sensors`)"
        )
    busy_columns = int((table.self_ns > 0).sum())
    split = [r.name for r in result.sensors if r.method == TIME_SPLIT and r.total_j > 0]
    if busy_columns < 2:
        split = []  # one row: nothing to split
    if split:
        out.append(
            "per-layer joules of " + ", ".join(split) + " assume every layer draws the same power "
            "(time split): the sensor's windows did not show layers drawing different power. "
            "Layers far shorter than the sensor's update period look alike to it; longer steps, "
            "a shorter --interval-ms or a longer run can reveal differences"
        )
    if result.total_j <= 0:
        out.append(
            "no energy was recorded: the profile was shorter than the sensors' update period"
        )
    inconsistencies = table.inconsistencies + hook_inconsistencies
    if inconsistencies:
        out.append(f"{inconsistencies} hook events did not match (e.g. a forward that raised)")
    return out + resolution_warnings(table, result, names)


def resolution_warnings(
    table: TimeTable, result: Attribution, names: list[tuple[str, str]]
) -> list[str]:
    """One line per layer the recorded steps could not resolve, saying what would."""
    out = []
    steps = table.steps or 1
    for column, rel, needed in result.unresolved[:MAX_RESOLUTION_WARNINGS]:
        module = names[column][0] or "(root)"
        phase = PHASES[table.columns[column][1]]
        if needed:
            advice = f"about {needed} steps would resolve it to ±20%"
        else:
            advice = (
                "the sensor's windows cannot tell its power from its neighbours'; more steps "
                "alike will not help, longer steps or a faster-updating sensor would"
            )
        out.append(f"{module} ({phase}): ±{rel:.0%} after {steps} steps is noise-level; {advice}")
    extra = len(result.unresolved) - MAX_RESOLUTION_WARNINGS
    if extra > 0:
        out.append(f"... and {extra} more layers not resolved to ±20%")
    return out
