"""The caveats of a comparison, in words: what was compared how, and what the machine did."""

from __future__ import annotations

from greenprof.report.run_to_run import MachineLoad, MachineShare, RunSpread
from greenprof.schema import OUTSIDE_MODULE, STARTUP_MODULE
from greenprof.session import Session

#: The words that start the note of a machine slower as a whole (the CLI and tests look for it).
MACHINE_SLOWER = "machine slower as a whole"


def comparison_notes(
    a: Session,
    b: Session,
    *,
    per_step: bool,
    machine: MachineShare,
    load: MachineLoad | None,
    coverage: tuple[float, float],
    shared: bool,
    spreads: tuple[RunSpread | None, RunSpread | None],
    fallback_rel: float,
) -> list[str]:
    """Return the notes :class:`~greenprof.report.compare.Comparison` carries, in order."""
    notes = _method_notes(a, b)
    if per_step:
        notes.append(
            f"step counts differ (A {a.meta['steps']}, B {b.meta['steps']}): "
            "figures are joules per step"
        )
    notes.append(_spread_note(spreads, fallback_rel))
    if not shared:
        notes.append("the runs share no module: only the totals compare (--force)")
    elif coverage[0] < 0.999 or coverage[1] < 0.999:
        notes.append(
            f"modules in both runs hold {100 * coverage[0]:.0f}% of A's energy and "
            f"{100 * coverage[1]:.0f}% of B's; the rest is in modules new or removed"
        )
    if STARTUP_MODULE in set(a.layers()["module"]) | set(b.layers()["module"]):
        notes.append(
            f"{STARTUP_MODULE} is compared per run, left out of the total, and never counts as "
            "a regression"
        )
    notes += _machine_notes(machine, load)
    return notes


def _method_notes(a: Session, b: Session) -> list[str]:
    notes = []
    if a.estimated != b.estimated:
        which = "A" if a.estimated else "B"
        notes.append(
            f"run {which} is estimated and the other measured: the change includes the method"
        )
    elif a.estimated:
        notes.append("both runs are ESTIMATED")
    names_a = sorted(str(s.get("name")) for s in a.meta.get("sensors", []))
    names_b = sorted(str(s.get("name")) for s in b.meta.get("sensors", []))
    if names_a != names_b:
        notes.append(f"sensors differ: A {names_a or 'none'}, B {names_b or 'none'}")
    return notes


def _spread_note(spreads: tuple[RunSpread | None, RunSpread | None], fallback_rel: float) -> str:
    missing = [side for side, spread in zip("AB", spreads, strict=True) if spread is None]
    if not missing:
        a, b = spreads
        assert a is not None and b is not None
        return (
            "run-to-run variation measured from each run's steps, resampled: total per step "
            f"±{100 * a.total_rel:.1f}% in A ({a.windows} windows), "
            f"±{100 * b.total_rel:.1f}% in B ({b.windows} windows)"
        )
    which = " and ".join(missing)
    return (
        f"run-to-run variation taken as ±{100 * fallback_rel:g}% of each figure where not "
        f"measured: {which} recorded no per-step series (steps.csv; an older greenprof, or too "
        "few steps)"
    )


def _machine_notes(machine: MachineShare, load: MachineLoad | None) -> list[str]:
    factor, alike = machine.factor, machine.alike
    spread = ""
    if machine.scatter_rel or machine.small_scatter_rel:
        spread = (
            f" and the modules' spread around it (±{100 * machine.scatter_rel:.0f}% for large "
            f"ones, ±{100 * machine.small_scatter_rel:.0f}% for all)"
        )
    if load is not None and load.busier and load.wall_factor and load.wall_factor > factor:
        spread += f"; {OUTSIDE_MODULE} against the wall-time factor"
    if load is not None and load.busier:
        return [
            f"{MACHINE_SLOWER} ({load.describe()}; modules' energy factor x{factor:.2f}), not a "
            f"code change: no regression unless a module rose beyond that factor{spread}"
        ]
    if load is not None and (load.differs or load.crowded) and spread:
        how = "differs between the runs" if load.differs else "was crowded (load per CPU >= 1)"
        return [
            f"the machine's load {how} ({load.describe()}): modules moved by x{factor:.2f} "
            f"together, the machine's change, not the code's; each module is judged against "
            f"that factor{spread}"
        ]
    if factor != 1.0:
        return [
            f"every module moved by a similar factor (x{factor:.2f}) and these runs hold no load "
            "evidence: taken as the machine's change (other load, clock speed), not the code's; "
            "each module is judged against that factor"
        ]
    if alike > 1.0 and load is not None:
        return [
            f"every module moved by a similar factor (x{alike:.2f}) but the machine was not "
            f"busier in B ({load.describe()}): judged as a change of the code"
        ]
    return []
