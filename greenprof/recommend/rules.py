"""The rule registry: from each layer's type, shape, joules and phase to candidate actions.

A rule reads :class:`LayerFacts` and yields :class:`Candidate` objects with an expected saving
(joules) and an expected risk (relative metric loss). The savings are first guesses: the loop
measures every candidate again before keeping it. Without a model (a saved run only) rules see
names, types and joules but no shapes or weights, and say in ``note`` what they could not check.

Register a rule of your own with :func:`rule`:

Example:
    >>> from greenprof.recommend.rules import rule
    >>> @rule
    ... def never(facts):
    ...     return []
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from greenprof.recommend.actions import bf16, lowrank, prune, unstructured
from greenprof.recommend.actions.base import is_excluded
from greenprof.recommend.actions.modules import (
    is_float_weight,
    is_linear_like,
    linear_shape,
)
from greenprof.recommend.candidates import Candidate, LayerFacts, rank
from greenprof.schema import NOT_MODULES
from greenprof.session import Session

logger = logging.getLogger(__name__)

Rule = Callable[[LayerFacts], Iterable[Candidate]]

#: Every registered rule, in registration order.
RULES: list[Rule] = []

#: Role groups per rule: the hottest few are enough, the loop re-ranks after every change.
TOP_ROLES = 3
#: Linear layers smaller than this (in x out) lose more to quantizing activations than they gain.
MIN_INT8_WEIGHTS = 4096
NO_MODEL = "no model given: "


def rule(function: Rule) -> Rule:
    """Register ``function`` as a rule and return it unchanged."""
    RULES.append(function)
    return function


def recommend(
    session: Session, model: nn.Module | None = None, *, exclude: Sequence[str] = ()
) -> list[Candidate]:
    """Return candidate changes for the layers in ``session``, best first.

    Args:
        session: a profile of the workload to make cheaper.
        model: the model that ran, for shapes and weights; module names must match the session.
        exclude: module names (and everything below them) never to touch.

    Returns:
        Candidates ranked by expected joules saved per unit of expected metric loss.
    """
    facts = LayerFacts.from_session(session, model, exclude)
    found: list[Candidate] = []
    for function in RULES:
        try:
            found.extend(function(facts))
        except Exception:  # noqa: BLE001 - one broken rule must not hide the others' advice
            logger.exception("greenprof: rule %s failed", getattr(function, "__name__", function))
    return rank(found)


# ------------------------------------------------------------------------------ helpers
def _linear_layers(facts: LayerFacts, dtype: torch.dtype | None = None) -> list[str]:
    """Linear-like float layers that ran (of ``dtype`` if given), or layers typed so (no model)."""
    if not facts.has_model:
        return [n for n, t in facts.types.items() if t in ("Linear", "Conv1D") and facts.usable(n)]
    return [
        name
        for name, module in facts.modules.items()
        if is_linear_like(module) and is_float_weight(module, dtype) and facts.usable(name)
    ]


def _trainable(facts: LayerFacts) -> bool:
    """True when every weight is a plain float tensor, so distillation can train the model."""
    return all(
        is_float_weight(m)
        for m in facts.modules.values()
        if hasattr(m, "weight") and m.weight is not None
    )


def _shares(count: int, what: str) -> str:
    return f"{count} {what}" + ("" if count == 1 else "s")


# ------------------------------------------------------------------------------ rules
@rule
def int8_dynamic(facts: LayerFacts) -> Iterable[Candidate]:
    """int8 dynamic quantization of the linear layers: ~2x fewer joules where int8 kernels win."""
    layers = _linear_layers(facts, torch.float32)
    if facts.has_model:
        layers = [n for n in layers if _weights(facts.modules[n]) >= MIN_INT8_WEIGHTS]
        note = "torchao and quantize_dynamic are both tried; re-profiling keeps the cheaper"
    else:
        note = NO_MODEL + "layer widths unknown; narrow layers can get slower in int8"
    if any("backward" in facts.phases.get(n, ()) for n in layers):
        note += "; int8 dynamic is for inference, these layers also ran backward"
    groups = [(layers, _shares(len(layers), "linear layer"))] if layers else []
    roles = list(facts.by_role(layers).items())
    if len(roles) > 1:
        groups += [(names, role) for role, names in roles[:TOP_ROLES]]
    for names, what in groups:
        yield Candidate(
            action="int8_dynamic",
            targets=tuple(names),
            params={},
            expected_saving_j=0.5 * facts.energy_of(names),
            expected_risk=0.005,
            label=f"int8 dynamic on {what}",
            note=note,
        )


def _weights(module: nn.Module) -> int:
    in_features, out_features = linear_shape(module)
    return in_features * out_features


@rule
def bfloat16(facts: LayerFacts) -> Iterable[Candidate]:
    """Whole model (less excluded parts) in bf16 where the hardware computes bf16 natively."""
    if facts.has_model:
        params = [p for p in facts.modules[""].parameters() if p.is_floating_point()]
        if not params or any(p.dtype != torch.float32 for p in params):
            return
        device = params[0].device.type
        if not bf16.bf16_is_fast(device):
            return
        note = f"{device} computes bf16 natively"
    else:
        note = NO_MODEL + "whether the run's hardware computes bf16 natively is unknown"
    targets = _cover(facts, "")
    if targets:
        yield Candidate(
            action="bf16",
            targets=tuple(targets),
            params={},
            expected_saving_j=0.5 * sum(facts.inclusive_j.get(t, 0.0) for t in targets),
            expected_risk=0.003,
            label="bf16 on " + ("the whole model" if targets == [""] else ", ".join(targets)),
            note=note,
        )


def _cover(facts: LayerFacts, name: str) -> list[str]:
    """Fewest modules that together hold the subtree ``name`` except its excluded parts."""
    if is_excluded(name, facts.exclude):
        return []
    if not any(is_excluded(e, [name]) for e in facts.exclude):
        return [name]
    prefix = f"{name}." if name else ""
    known = facts.modules or facts.types
    children = [n for n in known if n.startswith(prefix) and n and "." not in n[len(prefix) :]]
    if facts.has_model:
        # Parameter-free children (dropout, activations) gain nothing from a dtype of their own.
        children = [n for n in children if any(True for _ in facts.modules[n].parameters())]
    else:
        children = [n for n in children if n not in NOT_MODULES]
    return [covered for child in children for covered in _cover(facts, child)]


@rule
def prune_ffn(facts: LayerFacts) -> Iterable[Candidate]:
    """Structured pruning of FFN hidden neurons (the expanding linear layer and its consumer)."""
    if facts.has_model:
        if not _trainable(facts):
            return
        layers = [n for n in _linear_layers(facts) if _expands(facts.modules[n])]
        note = "the next linear layer shrinks too; a short distillation heals the model"
    else:
        words = ("intermediate", "fc1", "c_fc", "up_proj", "w1", "ffn", "mlp")
        layers = [n for n in _linear_layers(facts) if any(w in n for w in words)]
        note = NO_MODEL + "guessed from the layer names; expansion factor unknown"
    # The consumer layer shrinks as much as the target and costs about as much.
    yield from _pruning(facts, "prune_ffn", "FFN neurons", layers, (0.01, 0.03), note, 2.0)


def _expands(module: nn.Module) -> bool:
    in_features, out_features = linear_shape(module)
    return out_features >= 2 * in_features


@rule
def prune_heads(facts: LayerFacts) -> Iterable[Candidate]:
    """Structured pruning of whole attention heads (query/key/value outputs, projection inputs)."""
    if facts.has_model:
        if not _trainable(facts):
            return
        attentions = [n for n, m in facts.modules.items() if _has_heads(m) and facts.usable(n)]
        note = "a short distillation heals the model"
    else:
        attentions = [
            n
            for n, t in facts.types.items()
            if "Attention" in t and f"{n}.query" in facts.types and facts.usable(n)
        ]
        note = NO_MODEL + "head count unknown"

    def with_projections(names: list[str]) -> float:
        # The output projection is not a child of the attention module; it costs about as much
        # as one of query/key/value, hence the 4/3.
        children = [f"{n}.{c}" for n in names for c in ("query", "key", "value")]
        return facts.energy_of(names) + 4 / 3 * facts.energy_of(children)

    yield from _pruning(
        facts,
        "prune_heads",
        "attention heads",
        attentions,
        (0.015, 0.04),
        note,
        1.0,
        with_projections,
    )


def _has_heads(module: nn.Module) -> bool:
    try:
        prune.qkv_layers(module, "")
        return prune.head_size(module, "") > 0
    except Exception:  # noqa: BLE001 - "not an attention module" in any way
        return False


@rule
def prune_channels(facts: LayerFacts) -> Iterable[Candidate]:
    """Structured pruning of convolution output channels."""
    if facts.has_model:
        if not _trainable(facts):
            return
        convs = [
            n
            for n, m in facts.modules.items()
            if isinstance(m, nn.Conv2d) and m.out_channels >= 8 and facts.usable(n)
        ]
        note = "coupled layers (batch norm, next convolution) shrink too"
    else:
        convs = [n for n, t in facts.types.items() if t == "Conv2d" and facts.usable(n)]
        note = NO_MODEL + "channel counts unknown"
    # The next convolution (if any) loses as many inputs; batch norm costs little.
    yield from _pruning(facts, "prune_channels", "channels", convs, (0.015, 0.04), note, 1.5)


def _pruning(
    facts: LayerFacts,
    action: str,
    what: str,
    layers: list[str],
    risks: tuple[float, float],
    note: str,
    factor: float,
    energy_of: Callable[[list[str]], float] | None = None,
) -> Iterable[Candidate]:
    """Candidates removing 25% and 50% of ``what`` in the hottest role groups of ``layers``.

    ``factor`` scales the targets' own joules to what the change saves (coupled layers shrink
    too); ``energy_of`` replaces the targets' own joules where they are not the whole cost.
    """
    for role, names in list(facts.by_role(layers).items())[:TOP_ROLES]:
        energy = (energy_of or facts.energy_of)(names)
        for ratio, risk in zip((0.25, 0.5), risks, strict=True):
            yield Candidate(
                action=action,
                targets=tuple(names),
                params={"ratio": ratio},
                expected_saving_j=ratio * factor * energy,
                expected_risk=risk,
                label=f"prune {ratio:.0%} of {what} in {role}",
                note=note,
            )


@rule
def low_rank(facts: LayerFacts) -> Iterable[Candidate]:
    """Truncated-SVD factorization of linear layers whose spectrum is concentrated."""
    share = 0.9
    roles = list(facts.by_role(_linear_layers(facts)).items())[:TOP_ROLES]
    if not facts.has_model:
        for role, names in roles:
            yield Candidate(
                action="lowrank",
                targets=tuple(names),
                params={"energy_share": share},
                expected_saving_j=0.3 * facts.energy_of(names),
                expected_risk=0.03,
                label=f"low-rank ({share:.0%} of spectral energy) {role}",
                note=NO_MODEL + "the weights' spectrum is unknown; may not pay off",
            )
        return
    if not _trainable(facts):
        return
    for role, names in roles:
        saving = 0.0
        for name in names:
            module = facts.modules[name]
            in_features, out_features = linear_shape(module)
            rank_k = lowrank.rank_for_share(module.weight, share)
            ratio = lowrank.cost_ratio(in_features, out_features, rank_k)
            if ratio > lowrank.MAX_COST_RATIO:
                break
            saving += (1 - ratio) * facts.energy_j[name]
        else:
            yield Candidate(
                action="lowrank",
                targets=tuple(names),
                params={"energy_share": share},
                expected_saving_j=saving,
                expected_risk=0.03,
                label=f"low-rank ({share:.0%} of spectral energy) {role}",
                note="a short distillation heals the model",
            )


@rule
def drop_blocks(facts: LayerFacts) -> Iterable[Candidate]:
    """Drop the hottest repeated blocks (transformer layers) and distill from the original."""
    lists: dict[str, list[str]] = {}
    if facts.has_model:
        if not _trainable(facts):
            return
        for name, module in facts.modules.items():
            if isinstance(module, nn.ModuleList) and len(module) >= 3:
                lists[name] = [f"{name}.{i}" for i in range(len(module))]
        note = "short knowledge distillation from the original (temperature-softened outputs)"
    else:
        for name in facts.inclusive_j:
            parent, _, index = name.rpartition(".")
            if index.isdigit():
                lists.setdefault(parent, []).append(name)
        lists = {k: v for k, v in lists.items() if len(v) >= 3}
        note = NO_MODEL + "block structure guessed from the names"
    for blocks in lists.values():
        usable = [
            b for b in blocks if facts.inclusive_j.get(b, 0.0) > 0 and not facts.touches_excluded(b)
        ]
        usable.sort(key=lambda b: -facts.inclusive_j[b])
        for count in (1, 2):
            if count > len(usable) or len(blocks) - count < 2:
                continue
            dropped = usable[:count]
            yield Candidate(
                action="drop_blocks",
                targets=tuple(sorted(dropped)),
                params={},
                expected_saving_j=sum(facts.inclusive_j[b] for b in dropped),
                expected_risk=0.12 * count / len(blocks),
                label=f"drop {_shares(count, 'block')} of {len(blocks)}: {', '.join(dropped)}",
                note=note,
            )


@rule
def magnitude_pruning(facts: LayerFacts) -> Iterable[Candidate]:
    """Unstructured magnitude pruning: listed for honesty, it saves nothing on dense kernels."""
    roles = list(facts.by_role(_linear_layers(facts)).items())[:1]
    for role, names in roles:
        yield Candidate(
            action="unstructured",
            targets=tuple(names),
            params={"amount": 0.5},
            expected_saving_j=0.0,
            expected_risk=0.01,
            label=f"zero 50% of the weights in {role}",
            note=unstructured.NOTE,
        )
