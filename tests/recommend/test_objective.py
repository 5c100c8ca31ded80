"""Optimizing joules per new token: choosing the objective, dividing, judging, a real generate()."""

from __future__ import annotations

import math

import pytest
import torch
from recommend_fakes import FakeProfile, Meter

from greenprof.errors import ConfigError
from greenprof.recommend.capture import capture_calls
from greenprof.recommend.loop import optimize
from greenprof.recommend.measure import Measurement
from greenprof.recommend.objective import choose_objective, per_objective
from greenprof.sensors import ReplaySensor
from greenprof.session import Session


def measurement(new_tokens: float) -> Measurement:
    session = Session({}, None)
    return Measurement(session, 10, 6.0, 5.0, 8.0, 0.1, [5.0, 6.0, 8.0], 6.2, new_tokens)


def test_auto_is_per_token_only_when_the_workload_generated():
    assert choose_objective("auto", measurement(12.0)) == "j-per-token"
    assert choose_objective("auto", measurement(0.0)) == "j-per-call"
    assert choose_objective("j-per-call", measurement(12.0)) == "j-per-call"
    with pytest.raises(ConfigError, match="generated no new tokens"):
        choose_objective("j-per-token", measurement(0.0))
    with pytest.raises(ConfigError, match="choose one of auto, j-per-call, j-per-token"):
        choose_objective("j-per-joule", measurement(12.0))


def test_per_token_divides_every_figure_and_is_nan_without_tokens():
    per = per_objective(measurement(4.0), "j-per-token")
    assert (per.energy_j, per.energy_lo_j, per.energy_hi_j) == (1.5, 1.25, 2.0)
    assert per.repeat_energy_j == [1.25, 1.5, 2.0] and per.mean_energy_j == pytest.approx(1.55)
    assert per.uncertainty_j == pytest.approx(0.375)
    assert per_objective(measurement(4.0), "j-per-call").energy_j == 6.0
    assert math.isnan(per_objective(measurement(0.0), "j-per-token").energy_j)


class TokenMeter(Meter):
    """The fake workload "generates": 10 new tokens per call in float32, 2 once in bf16."""

    def profiler(self) -> FakeProfile:
        meter = self

        class Profile(FakeProfile):
            def __exit__(self, *exc: object) -> None:
                super().__exit__(*exc)
                calls = meter.calls - self.start
                bf16 = meter.model.head.weight.dtype == torch.bfloat16
                row = {"source": "generate", "prompt_tokens": 4, "new_tokens": 2 if bf16 else 10}
                self.session.meta["generation"] = [dict(row, call=i) for i in range(calls)]

        return Profile(meter)


def run(meter, model, **options):
    options = {"max_metric_drop": 0.1, "budget": 1, "actions": ["bf16"], **options}
    return optimize(
        model, meter.workload, lambda m: 1.0, profiler=meter.profiler, min_profile_s=0.0, **options
    )


def test_a_change_that_only_writes_less_is_rejected_per_token_and_kept_per_call(
    blocks, tokens, monkeypatch
):
    from greenprof.recommend.actions import bf16

    monkeypatch.setattr(bf16, "bf16_is_fast", lambda device="cpu": True)
    per_token = run(TokenMeter(tokens), blocks)
    assert per_token.objective == "j-per-token" and per_token.per == "new token"
    (step,) = per_token.history
    # bf16 costs 0.4x per call here, but makes 5x fewer tokens: 2x the joules per token.
    assert not step.accepted and "J/new token" in step.reason
    assert step.energy_after_j == pytest.approx(2 * step.energy_before_j)
    assert "energy per new token" in per_token.summary()
    assert per_token.meta["new_tokens_per_call_before"] == 10
    per_call = run(TokenMeter(tokens), blocks, objective="j-per-call")
    assert per_call.history[0].accepted and per_call.per == "workload call"


def test_per_token_asked_of_a_workload_that_generates_nothing_says_so(blocks, tokens):
    with pytest.raises(ConfigError, match="generated no new tokens"):
        run(Meter(tokens), blocks, objective="j-per-token")


def generate_workload(ids):
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # padding the count must leave out

    def workload(model):
        with torch.inference_mode():
            model.generate(ids, attention_mask=mask, max_new_tokens=3, do_sample=False)

    return workload


def test_captured_generate_calls_are_the_prompts_without_a_cache(tiny_gpt2, tokens):
    calls = capture_calls(tiny_gpt2, generate_workload(tokens[:2, 1:6]))
    assert len(calls) == 1  # the two decode steps read the cache: left out
    args, kwargs = calls[0]
    assert kwargs["input_ids"].shape == (2, 5)
    assert not any(hasattr(v, "get_seq_length") for v in kwargs.values())
    assert kwargs.get("use_cache") is False
    tiny_gpt2(*args, **kwargs)  # replayable on its own


def test_optimize_a_real_generate_workload_per_new_token(tiny_gpt2, tokens):
    tiny_gpt2.generation_config.eos_token_id = None  # every sequence runs to max_new_tokens
    sensor = ReplaySensor([0.0, 3600.0], [0.0, 50.0 * 3600.0], name="const")
    result = optimize(
        tiny_gpt2,
        generate_workload(tokens[:2, 1:6]),
        lambda m: 1.0,
        max_metric_drop=0.5,
        budget=1,
        actions=["drop_blocks"],
        distill_steps=2,
        min_profile_s=0.0,
        profile_options={"sensors": [sensor], "calibrate": False},
    )
    assert result.objective == "j-per-token"
    assert result.meta["new_tokens_per_call_before"] == 2 * 3
    (step,) = result.history
    assert not step.reason.startswith("could not apply"), step.reason  # distilled on prompts
    assert step.energy_after_j is not None and "J/new token" in step.reason
    assert result.before.generation()["new_tokens"].sum() == 6 * result.meta["repeats_before"]
