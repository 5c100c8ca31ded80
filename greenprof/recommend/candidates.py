"""Candidates (one proposed change each) and the layer facts the rules read to propose them."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from greenprof.recommend.actions.base import is_excluded
from greenprof.schema import NOT_MODULES
from greenprof.session import Session

#: Risks below this count as this, so a "free" change does not get an infinite score.
MIN_RISK = 1e-4


@dataclass(frozen=True)
class Candidate:
    """One proposed change: an action, the layers it touches and what it should win and risk.

    Attributes:
        action: registered action name (see :data:`greenprof.recommend.actions.ACTIONS`).
        targets: module names it changes (``""`` is the whole model).
        params: fixed parameters of the action (e.g. ``{"ratio": 0.5}``).
        expected_saving_j: joules per profiled workload it is expected to save.
        expected_risk: expected relative metric loss (0.01 = 1 % of the metric).
        label: one line for people, e.g. ``"int8 dynamic on 24 Linear layers"``.
        note: caveats, and what the rule could not know (shapes without a model, hardware).

    Example:
        >>> c = Candidate("bf16", ("",), {}, 2.0, 0.004, "bf16 on the whole model")
        >>> round(c.score)
        500
    """

    action: str
    targets: tuple[str, ...]
    params: dict[str, Any]
    expected_saving_j: float
    expected_risk: float
    label: str
    note: str = ""

    @property
    def score(self) -> float:
        """Expected joules saved per unit of expected relative metric loss."""
        return self.expected_saving_j / max(self.expected_risk, MIN_RISK)

    @property
    def key(self) -> tuple[Any, ...]:
        """What makes two candidates the same change (the loop tries each once)."""
        return (self.action, self.targets, tuple(sorted(self.params.items())))


def rank(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Sort best first: score, then expected saving; duplicates (same key) are dropped."""
    unique: dict[tuple[Any, ...], Candidate] = {}
    for candidate in candidates:
        unique.setdefault(candidate.key, candidate)
    return sorted(unique.values(), key=lambda c: (-c.score, -c.expected_saving_j, c.label))


def role_of(name: str) -> str:
    """Name a layer's role across repeated blocks: ``layer.3.ffn`` -> ``layer.*.ffn``."""
    return re.sub(r"(^|\.)\d+(?=\.|$)", r"\1*", name)


@dataclass
class LayerFacts:
    """What the rules know about each layer: joules from the session, objects from the model.

    Attributes:
        energy_j: self joules per module, all phases summed.
        inclusive_j: joules of each module with everything below it.
        types: class name per module as the session recorded it.
        phases: phases each module ran in.
        modules: the model's modules by name; empty when no model was given.
        exclude: names (and everything below them) that no candidate may touch.
    """

    energy_j: dict[str, float]
    inclusive_j: dict[str, float]
    types: dict[str, str]
    phases: dict[str, set[str]]
    modules: dict[str, nn.Module] = field(default_factory=dict)
    exclude: Sequence[str] = ()

    @classmethod
    def from_session(
        cls, session: Session, model: nn.Module | None = None, exclude: Sequence[str] = ()
    ) -> LayerFacts:
        """Collect the facts of ``session`` (and ``model``, whose names it must share)."""
        layers = session.layers()
        layers = layers[~layers["module"].isin(NOT_MODULES)]
        tree = session.inclusive()
        phases: dict[str, set[str]] = {}
        for module, phase in zip(layers["module"], layers["phase"], strict=True):
            phases.setdefault(str(module), set()).add(str(phase))
        return cls(
            energy_j=dict(zip(tree["module"], tree["self_energy_j"].astype(float), strict=True)),
            inclusive_j=dict(zip(tree["module"], tree["energy_j"].astype(float), strict=True)),
            types=dict(zip(tree["module"], tree["type"], strict=True)),
            phases=phases,
            modules=dict(model.named_modules()) if model is not None else {},
            exclude=tuple(exclude),
        )

    @property
    def has_model(self) -> bool:
        """True when the model was given, so shapes and weights can be inspected."""
        return bool(self.modules)

    def usable(self, name: str) -> bool:
        """True when ``name`` ran (has joules) and is not excluded."""
        return self.energy_j.get(name, 0.0) > 0.0 and not is_excluded(name, self.exclude)

    def touches_excluded(self, name: str) -> bool:
        """True when ``name`` is excluded or contains an excluded module."""
        return is_excluded(name, self.exclude) or any(is_excluded(e, [name]) for e in self.exclude)

    def total_j(self) -> float:
        """Joules of all modules together (outside-module time not included)."""
        return sum(v for v in self.energy_j.values() if math.isfinite(v))

    def by_role(self, names: Iterable[str]) -> dict[str, list[str]]:
        """Group ``names`` by :func:`role_of` and type, hottest group first."""
        groups: dict[str, list[str]] = {}
        for name in names:
            groups.setdefault(f"{role_of(name)} ({self.types.get(name, '')})", []).append(name)
        return dict(
            sorted(groups.items(), key=lambda item: -sum(self.energy_j[n] for n in item[1]))
        )

    def energy_of(self, names: Iterable[str]) -> float:
        """Self joules of ``names`` together."""
        return sum(self.energy_j.get(n, 0.0) for n in names)
