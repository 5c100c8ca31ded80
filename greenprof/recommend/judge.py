"""Whether a tried change is kept, and which changes are not worth trying again.

A change is kept when the energy fell by more than the two measurements' combined uncertainty
and the metric stayed within the allowed drop of the original model. A change whose every variant
cost as much or more on some layers is not tried again on a subset of them (until the model
changes): int8 on every linear layer of a model that decodes a few tokens at a time costs more,
and so does int8 on its MLP alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from greenprof.optimize_result import Step
from greenprof.recommend.measure import Measurement
from greenprof.recommend.objective import PER


class Judge:
    """Accept/reject: energy must fall beyond the noise, the metric stay within the allowed drop."""

    def __init__(
        self, metric_0: float, allowed: float, higher_is_better: bool, objective: str
    ) -> None:
        self.metric_0 = metric_0
        self.allowed = allowed
        self.higher_is_better = higher_is_better
        self.objective = objective

    @property
    def limit(self) -> float:
        """The worst metric still accepted."""
        if self.higher_is_better:
            return self.metric_0 - self.allowed
        return self.metric_0 + self.allowed

    def __call__(self, before: Measurement, after: Measurement, metric: float) -> tuple[bool, str]:
        """``(kept, why)`` for a change measured ``after`` against ``before``, with ``metric``."""
        saved = before.energy_j - after.energy_j
        noise = math.hypot(before.uncertainty_j, after.uncertainty_j)
        share = saved / before.energy_j if before.energy_j else 0.0
        unit = "J/call" if self.objective == "j-per-call" else "J/new token"
        energy = f"energy {-share:+.1%} ({-saved:+.3g} {unit}, noise ±{noise:.2g} J)"
        bound = ">=" if self.higher_is_better else "<="
        quality = f"metric {metric:.4g} (must be {bound} {self.limit:.4g})"
        if not math.isfinite(after.energy_j):
            # Only a per-token figure can be undefined: the changed model generated nothing.
            return False, f"no joules per {PER[self.objective]}: no new tokens generated; {quality}"
        if not math.isfinite(metric):
            return False, f"metric is {metric}; {energy}"
        ok = metric >= self.limit if self.higher_is_better else metric <= self.limit
        if not ok:
            return False, f"{quality} lost too much; {energy}"
        if saved <= noise:
            verdict = "rose" if saved < 0 else "did not fall beyond the noise"
            return False, f"energy {verdict}: {energy}; {quality}"
        return True, f"{energy}; {quality}"


def did_not_save(step: Step) -> bool:
    """True when the step was measured and its energy did not fall at all (noise aside)."""
    return step.energy_after_j is not None and not step.energy_after_j < step.energy_before_j


class Futile:
    """Actions that saved nothing on some modules, and so are not tried on fewer of them."""

    def __init__(self) -> None:
        self._targets: dict[str, list[str]] = {}

    def add(self, action: str, targets: Sequence[str]) -> None:
        """Remember that ``action`` on ``targets`` (``""``: the whole model) saved nothing."""
        self._targets.setdefault(action, []).extend(targets)

    def covers(self, action: str, targets: Sequence[str]) -> bool:
        """True when every target lies at or below a module ``action`` saved nothing on."""
        known = self._targets.get(action, [])
        return bool(targets) and all(
            any(k == "" or t == k or t.startswith(k + ".") for k in known) for t in targets
        )

    def clear(self) -> None:
        """Forget everything: the model changed, and what did not pay before may now."""
        self._targets.clear()
