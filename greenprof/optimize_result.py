"""What the optimize loop tried and what it kept: :class:`Step` and :class:`OptimizeResult`.

Data and files only, like :mod:`greenprof.session`; the report stage renders it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from greenprof.presenters import present
from greenprof.session import REPORT_FILE, Session, jsonable, write_json_atomic

if TYPE_CHECKING:
    from torch import nn

HISTORY_FILE = "history.json"


@dataclass
class Step:
    """One tried change (one variant of one candidate), measured and judged.

    Energies are joules per workload call (per new token under the ``j-per-token`` objective,
    see :attr:`OptimizeResult.objective`); ``*_lo_j``/``*_hi_j`` bound the 95 % interval. The
    "before" figures are those of the model the step started from (the last accepted one).

    Attributes:
        index: position in the history, from 1.
        action: registered action name.
        label: the candidate in words.
        targets: module names the action changed.
        params: the action's parameters, including the variant (e.g. ``{"backend": "legacy"}``).
        expected_saving_j: what the rule expected to save per call.
        expected_risk: the rule's expected relative metric loss.
        energy_before_j: joules per call before the change.
        energy_after_j: joules per call after it; ``None`` when it could not be applied.
        metric_before: metric before the change.
        metric_after: metric after it; ``None`` when not evaluated.
        accepted: True when the change was kept.
        reason: why it was kept or not.
        seconds: wall time the step took (apply, distillation, profile, evaluation).
        distill_steps: distillation steps run after the change (0 for lossless actions).
    """

    index: int
    action: str
    label: str
    targets: list[str]
    params: dict[str, Any]
    expected_saving_j: float
    expected_risk: float
    energy_before_j: float
    energy_before_lo_j: float
    energy_before_hi_j: float
    metric_before: float
    energy_after_j: float | None = None
    energy_after_lo_j: float | None = None
    energy_after_hi_j: float | None = None
    metric_after: float | None = None
    accepted: bool = False
    reason: str = ""
    seconds: float = 0.0
    distill_steps: int = 0

    @property
    def saving(self) -> float | None:
        """Fraction of the step's "before" joules it saved (negative: it cost more)."""
        if self.energy_after_j is None or not self.energy_before_j:
            return None
        return 1.0 - self.energy_after_j / self.energy_before_j


@dataclass
class OptimizeResult:
    """The outcome of :func:`greenprof.optimize`.

    Attributes:
        model: the optimized model: a new object, the caller's model is untouched.
        history: one :class:`Step` per tried change, in order.
        before: profile of the workload on the original model.
        after: profile of the workload on :attr:`model`.
        metric_before: the original model's metric.
        metric_after: the optimized model's metric.
        energy_before_j: joules per workload call of the original (with ``..._lo_j``/``_hi_j``).
        energy_after_j: joules per workload call of the optimized model.
        higher_is_better: direction of the metric.
        allowed_drop: the largest metric loss accepted, in the metric's units.
        objective: what the energies are per: ``"j-per-call"`` (a workload call) or
            ``"j-per-token"`` (a new token the workload generated); see :attr:`per`.
        stopped: why the loop ended.
        error: what went wrong when the loop stopped on an error, else ``None``.

    Example:
        >>> result = greenprof.optimize(  # doctest: +SKIP
        ...     model, workload, evaluate, max_metric_drop=0.01
        ... )
        >>> print(result.summary())  # doctest: +SKIP
    """

    model: nn.Module
    history: list[Step]
    before: Session
    after: Session
    metric_before: float
    metric_after: float
    energy_before_j: float
    energy_before_lo_j: float
    energy_before_hi_j: float
    energy_after_j: float
    energy_after_lo_j: float
    energy_after_hi_j: float
    higher_is_better: bool = True
    allowed_drop: float = 0.0
    objective: str = "j-per-call"
    stopped: str = ""
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def estimated(self) -> bool:
        """True when the joules come from an estimating sensor (no hardware counter)."""
        return self.before.estimated or self.after.estimated

    @property
    def per(self) -> str:
        """What one energy figure is per, in words: ``"workload call"`` or ``"new token"``."""
        return "new token" if self.objective == "j-per-token" else "workload call"

    @property
    def saving(self) -> float:
        """Fraction of the original joules per call (or per new token) saved."""
        return _saved(self.energy_after_j, self.energy_before_j)

    @property
    def saving_lo(self) -> float:
        """Lower end of :attr:`saving` (before at its lowest, after at its highest)."""
        return _saved(self.energy_after_hi_j, self.energy_before_lo_j)

    @property
    def saving_hi(self) -> float:
        """Upper end of :attr:`saving`."""
        return _saved(self.energy_after_lo_j, self.energy_before_hi_j)

    @property
    def accepted(self) -> list[Step]:
        """The steps that were kept, in order."""
        return [s for s in self.history if s.accepted]

    def summary(self) -> str:
        """Return a few lines for the terminal."""
        unit = "J (estimated)" if self.estimated else "J"
        before = _interval(self.energy_before_j, self.energy_before_lo_j, self.energy_before_hi_j)
        after = _interval(self.energy_after_j, self.energy_after_lo_j, self.energy_after_hi_j)
        lines = [
            f"energy per {self.per}: {before} -> {after} {unit}",
            f"saved {self.saving:.1%} ({self.saving_lo:.1%} to {self.saving_hi:.1%});"
            f" metric {self.metric_before:.4g} -> {self.metric_after:.4g}",
            f"{len(self.history)} change{'' if len(self.history) == 1 else 's'} tried, "
            f"{len(self.accepted)} kept"
            + "".join(f"\n  kept: {s.label}{_params(s.params)}" for s in self.accepted),
            f"stopped: {self.stopped}",
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the model and the sessions, as plain JSON-ready values."""
        data = {
            k: v
            for k, v in asdict(self).items()
            if k not in ("model", "history", "before", "after")
        }
        data["history"] = [asdict(step) for step in self.history]
        data["estimated"] = self.estimated
        data["saving"] = self.saving
        return jsonable(data)

    def save(self, directory: str | Path) -> Path:
        """Write ``history.json``, the ``before``/``after`` runs and ``report.html`` there."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.before.save(path / "before")
        self.after.save(path / "after")
        write_history(path, self.to_dict())
        (path / REPORT_FILE).write_text(present("optimize_html", self), encoding="utf-8")
        return path


def write_history(directory: Path, data: dict[str, Any]) -> None:
    """Write ``history.json`` atomically (a crash mid-write leaves the previous one)."""
    write_json_atomic(directory / HISTORY_FILE, data)


def _interval(value: float, lo: float, hi: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.4g} [{lo:.4g}, {hi:.4g}]"


def _params(params: dict[str, Any]) -> str:
    return " (" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")" if params else ""


def _saved(after_j: float, before_j: float) -> float:
    """Fraction of ``before_j`` that ``after_j`` saves (0 when there was nothing before)."""
    return 1.0 - after_j / before_j if before_j else 0.0
