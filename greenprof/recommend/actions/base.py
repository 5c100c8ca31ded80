"""What every compression action shares: its error, its inputs and its registry entry.

An action changes a model **in place** (the loop hands it a copy) and raises :class:`ActionError`
when it cannot, so the loop can record why and move on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from greenprof.errors import GreenprofError

#: One call of the model as the workload made it: positional and keyword arguments.
ModelCall = tuple[tuple[Any, ...], dict[str, Any]]


class ActionError(GreenprofError):
    """An action cannot be applied to these layers (wrong type, no saving possible, ...)."""


@dataclass
class ActionContext:
    """What an action may need besides the model and its targets.

    Attributes:
        calls: model calls captured from the workload; tracing (pruning) and distillation use
            them as inputs, so no data beyond what the workload already feeds is needed.
        exclude: module names that must not change, nor any module below them.
    """

    calls: Sequence[ModelCall] = ()
    exclude: Sequence[str] = ()


@dataclass(frozen=True)
class ActionSpec:
    """A registered action.

    Attributes:
        name: what history and reports call it, e.g. ``"int8_dynamic"``.
        apply: ``apply(model, targets, context, **params)``; changes ``model`` in place.
        variants: parameter sets that are tried one by one, each re-profiled; the cheapest that
            keeps the metric wins (one per action for most, two backends for int8).
        heal: True when the change loses accuracy that a short distillation from the model
            before the change can win back.
    """

    name: str
    apply: Callable[..., None]
    variants: tuple[dict[str, Any], ...] = field(default=({},))
    heal: bool = False


def is_excluded(name: str, exclude: Sequence[str]) -> bool:
    """Return True when module ``name`` is, or lies below, one of ``exclude``."""
    return any(name == e or name.startswith(e + ".") or e == "" for e in exclude)


def check_targets(model: nn.Module, targets: Sequence[str], context: ActionContext) -> None:
    """Raise :class:`ActionError` for targets that are missing or excluded."""
    modules = dict(model.named_modules())
    for name in targets:
        if name not in modules:
            raise ActionError(f"no module named {name!r} in the model")
        if is_excluded(name, context.exclude):
            raise ActionError(f"{name!r} is excluded")
