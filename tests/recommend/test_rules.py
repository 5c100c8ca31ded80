"""Rules turn layer facts into ranked candidates; hand-built sessions keep them exact."""

from __future__ import annotations

import pandas as pd
import pytest

from greenprof.recommend import rules
from greenprof.recommend.actions import bf16
from greenprof.recommend.candidates import Candidate, rank, role_of
from greenprof.recommend.rules import recommend
from greenprof.session import Session


def session_of(rows: list[tuple[str, str, float]], phase: str = "forward") -> Session:
    frame = pd.DataFrame(
        [
            {
                "module": module,
                "type": kind,
                "phase": phase,
                "calls": 1,
                "time_s": energy / 10,
                "energy_j": energy,
                "energy_lo_j": energy * 0.9,
                "energy_hi_j": energy * 1.1,
            }
            for module, kind, energy in rows
        ]
    )
    return Session({"sensors": [{"name": "cpu-estimate", "measured": False}]}, frame)


def blocks_session(model) -> Session:
    """Joules proportional to the weights of each layer of the ``Blocks`` model."""
    rows = []
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        rows.append(
            (name, type(module).__name__, float(weight.numel()) if weight is not None else 1)
        )
    return session_of(rows)


@pytest.fixture
def fast_bf16(monkeypatch):
    monkeypatch.setattr(bf16, "bf16_is_fast", lambda device="cpu": True)


@pytest.fixture
def slow_bf16(monkeypatch):
    monkeypatch.setattr(bf16, "bf16_is_fast", lambda device="cpu": False)


def test_role_groups_repeated_blocks():
    assert role_of("encoder.layer.11.ffn.dense") == "encoder.layer.*.ffn.dense"
    assert role_of("0.weight") == "*.weight"
    assert role_of("h.2") == "h.*"


def test_rank_by_joules_per_risk_and_drop_duplicates():
    cheap = Candidate("bf16", ("",), {}, 1.0, 0.001, "a")
    big_risky = Candidate("drop_blocks", ("h.0",), {}, 5.0, 0.1, "b")
    twin = Candidate("bf16", ("",), {}, 9.0, 0.5, "c")
    assert rank([big_risky, cheap, twin]) == [cheap, big_risky]


def test_without_model_rules_use_types_and_say_what_is_unknown(slow_bf16):
    session = session_of(
        [
            ("", "Net", 0.1),
            ("enc.0.fc1", "Linear", 4.0),
            ("enc.1.fc1", "Linear", 4.0),
            ("enc.2.fc1", "Linear", 4.0),
            ("enc.0", "Block", 0.1),
            ("enc.1", "Block", 0.1),
            ("enc.2", "Block", 0.1),
            ("act", "ReLU", 2.0),
        ]
    )
    found = recommend(session)
    actions = {c.action for c in found}
    assert {"int8_dynamic", "bf16", "prune_ffn", "drop_blocks", "lowrank"} <= actions
    assert all(c.note for c in found)
    assert all("no model given" in c.note for c in found if c.action != "unstructured")
    int8 = next(c for c in found if c.action == "int8_dynamic")
    assert int8.expected_saving_j == pytest.approx(6.0)
    assert not any("act" in c.targets for c in found)


def test_with_model_shapes_decide(blocks, fast_bf16):
    found = recommend(blocks_session(blocks), blocks)
    by_action = {}
    for candidate in found:
        by_action.setdefault(candidate.action, []).append(candidate)
    # Every linear layer but the tiny head (3 x 32 weights) is worth int8.
    everything = by_action["int8_dynamic"][0]
    assert "head" not in everything.targets and len(everything.targets) == 6
    # Only the expanding layers (32 -> 128) are FFN pruning targets.
    assert {c.targets for c in by_action["prune_ffn"]} == {
        ("blocks.0.0", "blocks.1.0", "blocks.2.0")
    }
    assert by_action["bf16"][0].targets == ("",)
    assert {len(c.targets) for c in by_action["drop_blocks"]} == {1}  # 3 blocks: keep 2
    assert by_action["unstructured"][0].expected_saving_j == 0.0
    assert found == sorted(found, key=lambda c: -c.score)


def test_exclude_is_honoured(blocks, fast_bf16):
    found = recommend(blocks_session(blocks), blocks, exclude=["blocks.1", "embed"])
    for candidate in found:
        for target in candidate.targets:
            assert not target.startswith("blocks.1") and target != "embed"
            assert target != ""  # the root holds excluded modules: bf16 covers around them
    bf16_targets = next(c for c in found if c.action == "bf16").targets
    assert set(bf16_targets) == {"blocks.0", "blocks.2", "norm", "head"}


def test_bf16_only_where_hardware_is_fast(blocks, slow_bf16):
    assert not [c for c in recommend(blocks_session(blocks), blocks) if c.action == "bf16"]


def test_a_broken_rule_does_not_hide_the_others(blocks, monkeypatch, caplog):
    def broken(facts):
        raise RuntimeError("boom")

    monkeypatch.setattr(rules, "RULES", [broken, *rules.RULES])
    assert recommend(blocks_session(blocks), blocks)
    assert "boom" in caplog.text


def test_training_phase_is_noted_for_int8(slow_bf16):
    session = session_of([("fc", "Linear", 3.0)], phase="backward")
    note = next(c for c in recommend(session) if c.action == "int8_dynamic").note
    assert "backward" in note
