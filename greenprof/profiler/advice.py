"""The session's warnings: what the user should know about how far the figures can be trusted."""

from __future__ import annotations

from typing import Any

from greenprof.attribute.fit import TIME_SPLIT, Attribution
from greenprof.attribute.uncertainty import NOISE_REL
from greenprof.schema import PHASES, TimeTable
from greenprof.track.names import KeyInfo

#: At most this many "layer not resolved" warnings are listed one by one.
MAX_RESOLUTION_WARNINGS = 20


def session_warnings(
    sampler_warnings: list[str],
    hook_inconsistencies: int,
    table: TimeTable,
    result: Attribution,
    names: list[tuple[str, str]],
    *,
    calibrated: bool = False,
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
    if not result.sensors:
        out.append(
            "this process owns no sensor: under a multi-process launcher another rank measures "
            "this node's devices (see greenprof.sensors.ranks), and the merged run adds them up"
        )
    elif result.total_j <= 0:
        out.append(
            "no energy was recorded: the profile was shorter than the sensors' update period"
        )
    inconsistencies = table.inconsistencies + hook_inconsistencies
    if inconsistencies:
        out.append(f"{inconsistencies} hook events did not match (e.g. a forward that raised)")
    return out + resolution_warnings(table, result, names, calibrated=calibrated)


def resolution_warnings(
    table: TimeTable,
    result: Attribution,
    names: list[tuple[str, str]],
    *,
    calibrated: bool = False,
) -> list[str]:
    """One line per layer the recorded steps could not resolve, saying what would."""
    out = []
    steps = table.steps or 1
    target = f"±{NOISE_REL:.0%}"
    for column, rel, needed in result.unresolved[:MAX_RESOLUTION_WARNINGS]:
        module = names[column][0] or "(root)"
        phase = PHASES[table.columns[column][1]]
        if calibrated:
            advice = "a longer calibration (--calibrate-s) or a longer run would narrow it"
        elif needed:
            advice = f"about {needed} steps would resolve it to {target}"
        else:
            advice = (
                "the sensor's windows cannot tell its power from its neighbours'; more steps "
                "alike will not help, longer steps or a faster-updating sensor would"
            )
        out.append(f"{module} ({phase}): ±{rel:.0%} after {steps} steps is noise-level; {advice}")
    extra = len(result.unresolved) - MAX_RESOLUTION_WARNINGS
    if extra > 0:
        out.append(f"... and {extra} more layers not resolved to {target}")
    return out


#: Replayed powers that predict the run's joules further off than this are reported.
MISFIT_REL = 0.15


def calibration_warnings(facts: dict[str, Any]) -> list[str]:
    """What the user should know of the calibration: interrupted, failed parts, misfit."""
    out = []
    note = str(facts.get("note", ""))
    if "interrupted" in note:
        out.append(note + ": per-layer joules come from the run's own windows alone")
    for name, factor in (facts.get("misfit") or {}).items():
        if factor == factor and abs(factor - 1.0) > MISFIT_REL:  # NaN: nothing to compare
            out.append(
                f"{name}: the replayed layers' powers predict {1 / factor:.0%} of the run's "
                "measured joules: layers draw differently in the run (cache, clocks, overlap); "
                "rows are scaled to the measured total"
            )
    skipped = facts.get("skipped") or {}
    if skipped:
        listed = ", ".join(f"{n or '(root)'} ({why})" for n, why in list(skipped.items())[:3])
        out.append(f"{len(skipped)} layer(s) could not be replayed and keep the fit: {listed}")
    for root, why in (facts.get("roots_failed") or {}).items():
        out.append(f"calibration could not run {root} again ({why}); its layers keep the fit")
    return out


#: Layers PyTorch may run as one fused kernel, skipping their sublayers' forward (and hooks), and
#: the sublayer whose missing calls show it.
_FUSED_FAST_PATH = {"TransformerEncoderLayer": "self_attn"}


def tracking_warnings(table: TimeTable, keys: list[KeyInfo], compiled: list[str]) -> list[str]:
    """What the hooks could not see: compiled modules' insides, fused layers' sublayers."""
    out = []
    if compiled:
        listed = ", ".join(name or "(root)" for name in compiled[:3])
        more = f" and {len(compiled) - 3} more" if len(compiled) > 3 else ""
        out.append(
            f"{listed}{more} ran compiled by torch.compile: each compiled module is one row (its "
            "layers ran inside the compiled graph, where no hook runs). For per-layer rows, "
            "profile in eager mode, or exclude chosen submodules from compilation with "
            "torch.compiler.disable(submodule)"
        )
    forward = PHASES.index("forward")
    called = [
        keys[key]
        for (key, phase), calls in zip(table.columns, table.calls, strict=True)
        if key >= 0 and phase == forward and calls > 0 and not keys[key].is_optimizer
    ]
    seen = {(info.root, info.name) for info in called}
    fused = [
        info.name or "(root)"
        for info in called
        if info.type_name in _FUSED_FAST_PATH
        and (info.root, _child(info.name, _FUSED_FAST_PATH[info.type_name])) not in seen
    ]
    if fused:
        out.append(
            f"{len(fused)} TransformerEncoderLayer(s) (e.g. {fused[0]}) ran PyTorch's fused fast "
            "path (evaluation without gradients): their sublayers (self_attn, linear1, ...) ran "
            "inside one kernel and have no rows; their time is in the layer's row. For rows per "
            "sublayer, call torch.backends.mha.set_fastpath_enabled(False) before profiling"
        )
    return out


def _child(name: str, child: str) -> str:
    return f"{name}.{child}" if name else child
