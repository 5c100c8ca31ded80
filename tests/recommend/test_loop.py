"""The optimize loop: the caller's model, exclusions, failures, stops and rejections."""

from __future__ import annotations

import json

import pytest
import torch
from recommend_fakes import Meter, checksums
from torch import nn

from greenprof.recommend import rules
from greenprof.recommend.actions import ACTIONS, ActionError, ActionSpec, bf16
from greenprof.recommend.candidates import Candidate
from greenprof.recommend.loop import optimize


@pytest.fixture(autouse=True)
def _bf16_fast(monkeypatch):
    monkeypatch.setattr(bf16, "bf16_is_fast", lambda device="cpu": True)


def run(model, tokens, evaluate=lambda m: 1.0, **options):
    meter = Meter(tokens)
    options.setdefault("max_metric_drop", 0.1)
    options.setdefault("min_profile_s", 0.0)
    options.setdefault("distill_steps", 2)
    return optimize(model, meter.workload, evaluate, profiler=meter.profiler, **options)


def is_float32(model: nn.Module) -> bool:
    """True while no layer is quantized or in bf16."""
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if weight is None:
            continue
        if callable(weight) or type(weight) not in (torch.Tensor, nn.Parameter):
            return False
        if weight.dtype != torch.float32:
            return False
    return True


def test_keeps_a_change_that_saves_and_leaves_the_caller_model_alone(blocks, tokens):
    before = checksums(blocks)
    result = run(blocks, tokens, budget=1, actions=["bf16"])
    assert checksums(blocks) == before
    assert blocks.head.weight.dtype == torch.float32
    assert result.model is not blocks
    assert result.model.head.weight.dtype == torch.bfloat16
    (step,) = result.history
    assert step.accepted and step.action == "bf16" and step.energy_after_j < step.energy_before_j
    assert result.energy_after_j < result.energy_before_j
    assert result.after.total_energy_j < result.before.total_energy_j
    assert result.metric_before == result.metric_after == 1.0
    summary = result.summary()
    assert "1 change tried, 1 kept" in summary and "estimated" not in summary


def test_int8_tries_both_backends_and_keeps_the_cheaper(blocks, tokens):
    result = run(blocks, tokens, budget=2, actions=["int8_dynamic"])
    backends = [step.params["backend"] for step in result.history]
    assert backends == ["torchao", "legacy"]
    kept = [step for step in result.history if step.accepted]
    # The fake profiler prices the legacy layers at 0.3x, torchao's at 0.5x.
    assert [step.params["backend"] for step in kept] == ["legacy"]
    assert "cost less" in result.history[0].reason


def test_rejects_when_the_metric_drops_too_much(blocks, tokens):
    def evaluate(model):
        return 0.9 if is_float32(model) else 0.5

    result = run(blocks, tokens, evaluate, budget=3, actions=["bf16", "int8_dynamic"])
    assert len(result.history) == 3
    assert not any(step.accepted for step in result.history)
    assert all("lost too much" in step.reason for step in result.history)
    assert checksums(result.model) == checksums(blocks)
    assert result.metric_after == 0.9


def test_relative_drop_and_lower_is_better(blocks, tokens):
    def perplexity(model):
        return 10.0 if is_float32(model) else 10.2

    kept = run(
        blocks,
        tokens,
        perplexity,
        budget=1,
        actions=["bf16"],
        max_metric_drop=0.03,
        relative=True,
        higher_is_better=False,
    )
    assert kept.history[0].accepted and kept.allowed_drop == pytest.approx(0.3)
    refused = run(
        blocks,
        tokens,
        perplexity,
        budget=1,
        actions=["bf16"],
        max_metric_drop=0.01,
        relative=True,
        higher_is_better=False,
    )
    assert not refused.history[0].accepted
    assert "lost too much" in refused.history[0].reason


def test_exclude_is_never_touched(blocks, tokens):
    result = run(blocks, tokens, budget=6, exclude=["blocks.0", "head"])
    tried = [t for step in result.history for t in step.targets]
    assert tried and not any(t == "" or t.startswith("blocks.0") or t == "head" for t in tried)
    after = checksums(result.model)
    original = checksums(blocks)
    for name in ("blocks.0.0", "blocks.0.2", "head"):
        assert after[name] == original[name]
    assert type(result.model.head) is nn.Linear and result.model.head.weight.dtype == torch.float32


def test_a_failing_candidate_is_recorded_and_the_loop_goes_on(blocks, tokens, monkeypatch):
    def explode(model, targets, context):
        raise ActionError("cannot do that here")

    def propose_broken(facts):
        yield Candidate("explode", ("head",), {}, 1e9, 1e-9, "always fails")

    monkeypatch.setitem(ACTIONS, "explode", ActionSpec(name="explode", apply=explode))
    monkeypatch.setattr(rules, "RULES", [propose_broken, *rules.RULES])
    result = run(blocks, tokens, budget=2, actions=["explode", "bf16"])
    first, second = result.history
    assert first.action == "explode" and not first.accepted
    assert first.reason == "could not apply: ActionError: cannot do that here"
    assert first.energy_after_j is None
    assert second.action == "bf16" and second.accepted


def test_evaluate_raising_stops_and_returns_the_history(blocks, tokens, tmp_path):
    calls = []

    def evaluate(model):
        calls.append(model)
        if len(calls) > 1:
            raise RuntimeError("evaluation data vanished")
        return 1.0

    result = run(blocks, tokens, evaluate, budget=5, out=tmp_path)
    assert len(result.history) == 1
    assert result.stopped == "evaluate raised"
    assert "evaluation data vanished" in result.error
    assert not result.history[0].accepted
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved["error"] == result.error and len(saved["history"]) == 1
    assert (tmp_path / "report.html").is_file()
    assert (tmp_path / "before" / "session.json").is_file()


def test_evaluate_raising_on_the_original_model_propagates(blocks, tokens):
    def evaluate(model):
        raise ValueError("broken metric")

    with pytest.raises(ValueError, match="broken metric"):
        run(blocks, tokens, evaluate)


def test_stops_when_nothing_is_left_and_keeps_budget(blocks, tokens):
    result = run(blocks, tokens, budget=50, actions=["bf16"])
    assert len(result.history) == 1
    assert result.stopped == "no untried candidate left"
    assert run(blocks, tokens, budget=0).history == []


def test_lossy_change_is_distilled_and_recorded(blocks, tokens):
    result = run(blocks, tokens, budget=1, actions=["drop_blocks"], distill_steps=3)
    (step,) = result.history
    assert step.distill_steps == 3 and step.accepted
    assert len(result.model.blocks) == 2 and len(blocks.blocks) == 3


def test_a_kept_change_may_be_applied_again(blocks, tokens):
    result = run(blocks, tokens, budget=2, actions=["prune_ffn"], distill_steps=0)
    first, second = result.history
    assert first.accepted and second.accepted
    assert (first.targets, first.params) == (second.targets, second.params)
    assert result.model.blocks[0][0].out_features == 72  # 128 -> 96 -> 72


def test_an_action_that_saved_nothing_is_not_tried_again_on_fewer_layers(
    tiny_gpt2, tokens, monkeypatch
):
    import recommend_fakes

    plain = recommend_fakes.cost

    def dearer_when_quantized(module):
        weight = getattr(module, "weight", None)
        if callable(weight):  # torch.ao dynamic quantized
            return 2.0 * weight().numel()
        if isinstance(weight, torch.Tensor) and type(weight) not in (torch.Tensor, nn.Parameter):
            return 2.0 * weight.numel()  # torchao
        return plain(module)

    monkeypatch.setattr(recommend_fakes, "cost", dearer_when_quantized)
    meter = Meter(tokens)
    with meter.profiler() as prof:
        meter.workload(tiny_gpt2)
    int8 = [c for c in rules.recommend(prof.session, tiny_gpt2) if c.action == "int8_dynamic"]
    assert len(int8) > 1 and all(set(c.targets) <= set(int8[0].targets) for c in int8[1:])
    result = run(tiny_gpt2, tokens, budget=8, actions=["int8_dynamic"])
    # Both backends on every linear layer cost no less: int8 on some of them is not tried.
    assert [s.params.get("backend") for s in result.history] == ["torchao", "legacy"]
    assert all(not s.accepted for s in result.history)
    assert result.stopped == "no untried candidate left"
