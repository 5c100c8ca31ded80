"""Each action changes the layers it targets, and nothing else."""

from __future__ import annotations

import copy

import pytest
import torch
from recommend_fakes import checksums
from torch import nn

from greenprof.recommend.actions import ACTIONS, ActionContext, ActionError, get_action
from greenprof.recommend.actions.distill import _kd_loss, distill
from greenprof.recommend.actions.lowrank import LowRankLinear
from greenprof.recommend.outputs import main_tensor


def changed(before: nn.Module, after: nn.Module) -> set[str]:
    """Leaf modules whose parameters differ, or that appeared or vanished."""
    old, new = checksums(before), checksums(after)
    return {n for n in old.keys() | new.keys() if old.get(n) != new.get(n)}


def bert_call(tokens: torch.Tensor) -> ActionContext:
    return ActionContext(calls=[((), {"input_ids": tokens})])


@pytest.mark.parametrize("backend", ["torchao", "legacy"])
def test_int8_quantizes_only_targets(blocks, tokens, backend):
    model = copy.deepcopy(blocks)
    targets = ["blocks.0.0", "blocks.1.2"]
    get_action("int8_dynamic").apply(model, targets, ActionContext(), backend=backend)
    assert changed(blocks, model) == set(targets)
    for name in targets:
        weight = model.get_submodule(name).weight
        assert callable(weight) or type(weight) not in (torch.Tensor, nn.Parameter)
    with torch.inference_mode():
        torch.testing.assert_close(model(tokens), blocks(tokens), atol=0.05, rtol=0.05)


def test_int8_converts_gpt2_conv1d(tiny_gpt2, tokens):
    model = copy.deepcopy(tiny_gpt2)
    target = "transformer.h.0.mlp.c_fc"
    get_action("int8_dynamic").apply(model, [target], ActionContext(), backend="legacy")
    assert changed(tiny_gpt2, model) == {target}
    with torch.inference_mode():
        assert main_tensor(model(input_ids=tokens)).shape == (4, 12, 60)


def test_int8_refuses_unknown_backend_and_non_linear(blocks):
    with pytest.raises(ActionError, match="unknown int8 backend"):
        get_action("int8_dynamic").apply(blocks, ["head"], ActionContext(), backend="fp4")
    with pytest.raises(ActionError, match="not a linear layer"):
        get_action("int8_dynamic").apply(blocks, ["norm"], ActionContext())


def test_excluded_and_missing_targets_are_refused(blocks):
    with pytest.raises(ActionError, match="excluded"):
        get_action("bf16").apply(blocks, ["blocks"], ActionContext(exclude=["blocks"]))
    with pytest.raises(ActionError, match="no module named"):
        get_action("bf16").apply(blocks, ["nope"], ActionContext())


def test_bf16_converts_targets_and_keeps_float32_outside(blocks, tokens):
    model = copy.deepcopy(blocks)
    get_action("bf16").apply(model, ["blocks.1"], ActionContext())
    assert changed(blocks, model) == {"blocks.1.0", "blocks.1.2"}
    assert model.blocks[1][0].weight.dtype == torch.bfloat16
    assert model.blocks[0][0].weight.dtype == torch.float32
    with torch.inference_mode():
        out = model(tokens)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, blocks(tokens).detach(), atol=0.05, rtol=0.05)


def test_bf16_whole_transformer_keeps_model_output_type(tiny_bert, tokens):
    model = copy.deepcopy(tiny_bert)
    get_action("bf16").apply(model, [""], ActionContext())
    with torch.inference_mode():
        output = model(input_ids=tokens)
    assert output.logits.dtype == torch.float32


def test_lowrank_factorizes_a_low_rank_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64))
    with torch.no_grad():  # rank 4: the action should find it
        model[0].weight.copy_(torch.randn(64, 4) @ torch.randn(4, 64))
    reference = copy.deepcopy(model)
    get_action("lowrank").apply(model, ["0"], ActionContext(), energy_share=0.999)
    assert isinstance(model[0], LowRankLinear)
    assert model[0].down.out_features <= 5
    assert checksums(model)["2"] == checksums(reference)["2"]
    x = torch.randn(3, 64)
    torch.testing.assert_close(model(x), reference(x), atol=1e-3, rtol=1e-3)


def test_lowrank_refuses_when_it_would_not_save():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64))
    with pytest.raises(ActionError, match="dense cost"):
        get_action("lowrank").apply(model, ["0"], ActionContext(), energy_share=0.99)


def test_unstructured_zeros_the_smallest_weights_only_in_targets(blocks):
    model = copy.deepcopy(blocks)
    get_action("unstructured").apply(model, ["blocks.0.0"], ActionContext(), amount=0.5)
    weight = model.blocks[0][0].weight
    assert (weight == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)
    kept = weight[weight != 0].abs().min()
    original = blocks.blocks[0][0].weight
    assert kept >= original.abs().median() - 1e-6
    assert changed(blocks, model) == {"blocks.0.0"}


def test_prune_ffn_shrinks_the_layer_and_its_consumer(blocks, tokens):
    model = copy.deepcopy(blocks)
    context = ActionContext(calls=[((tokens,), {})])
    get_action("prune_ffn").apply(model, ["blocks.2.0"], context, ratio=0.25)
    assert model.blocks[2][0].out_features == 96
    assert model.blocks[2][2].in_features == 96
    assert changed(blocks, model) == {"blocks.2.0", "blocks.2.2"}
    assert model(tokens).shape == (4, 3)


def test_prune_ffn_on_gpt2_conv1d(tiny_gpt2, tokens):
    model = copy.deepcopy(tiny_gpt2)
    get_action("prune_ffn").apply(model, ["transformer.h.1.mlp.c_fc"], bert_call(tokens), ratio=0.5)
    assert model.transformer.h[1].mlp.c_fc.out_features == 64
    assert changed(tiny_gpt2, model) == {"transformer.h.1.mlp.c_fc", "transformer.h.1.mlp.c_proj"}
    assert main_tensor(model(input_ids=tokens)).shape == (4, 12, 60)


def test_prune_ffn_refuses_to_shrink_the_residual_stream(blocks, tokens):
    context = ActionContext(calls=[((tokens,), {})])
    with pytest.raises(ActionError, match="width"):
        get_action("prune_ffn").apply(blocks, ["blocks.0.2"], context, ratio=0.25)


def test_prune_ffn_refuses_coupled_excluded_layer(blocks, tokens):
    context = ActionContext(calls=[((tokens,), {})], exclude=["blocks.2.2"])
    with pytest.raises(ActionError, match="excluded"):
        get_action("prune_ffn").apply(blocks, ["blocks.2.0"], context, ratio=0.25)


def test_prune_heads_removes_whole_heads(tiny_bert, tokens):
    model = copy.deepcopy(tiny_bert)
    target = "bert.encoder.layer.1.attention.self"
    get_action("prune_heads").apply(model, [target], bert_call(tokens), ratio=0.5)
    attention = model.get_submodule(target)
    assert attention.query.out_features == attention.value.out_features == 16
    assert attention.num_attention_heads == 2
    assert model.bert.encoder.layer[1].attention.output.dense.in_features == 16
    assert changed(tiny_bert, model) == {
        f"{target}.query",
        f"{target}.key",
        f"{target}.value",
        "bert.encoder.layer.1.attention.output.dense",
    }
    assert model(input_ids=tokens).logits.shape == (4, 3)


def test_prune_channels_shrinks_convolutions():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 8, 3), nn.Flatten()
    ).eval()
    reference = copy.deepcopy(model)
    x = torch.randn(2, 3, 10, 10)
    get_action("prune_channels").apply(model, ["0"], ActionContext(calls=[((x,), {})]), ratio=0.5)
    assert model[0].out_channels == 8 and model[1].num_features == 8 and model[3].in_channels == 8
    assert changed(reference, model) == {"0", "1", "3"}
    assert model(x).shape == reference(x).shape


def test_prune_needs_a_captured_call(blocks):
    with pytest.raises(ActionError, match="captured"):
        get_action("prune_ffn").apply(blocks, ["blocks.0.0"], ActionContext(), ratio=0.25)


def test_drop_blocks_removes_blocks_and_renumbers(tiny_gpt2, tokens):
    model = copy.deepcopy(tiny_gpt2)
    get_action("drop_blocks").apply(model, ["transformer.h.1"], ActionContext())
    assert len(model.transformer.h) == 2
    assert model.config.n_layer == 2
    assert [block.attn.layer_idx for block in model.transformer.h] == [0, 1]
    assert checksum_of(model.transformer.h[1]) == checksum_of(tiny_gpt2.transformer.h[2])
    assert main_tensor(model(input_ids=tokens)).shape == (4, 12, 60)


def checksum_of(module: nn.Module) -> dict[str, str]:
    return checksums(module)


def test_drop_blocks_refuses_to_empty_a_list_and_non_blocks(blocks):
    with pytest.raises(ActionError, match="empty"):
        get_action("drop_blocks").apply(
            blocks, ["blocks.0", "blocks.1", "blocks.2"], ActionContext()
        )
    with pytest.raises(ActionError, match="ModuleList"):
        get_action("drop_blocks").apply(blocks, ["head"], ActionContext())


def test_distill_pulls_the_student_towards_the_teacher(blocks, tokens):
    student = copy.deepcopy(blocks)
    get_action("drop_blocks").apply(student, ["blocks.1"], ActionContext())
    calls = [((tokens,), {})]

    def gap() -> float:
        with torch.no_grad():
            return float(_kd_loss(student(tokens), blocks(tokens), temperature=1.0))

    before = gap()
    teacher_sum = checksums(blocks)
    distill(student, blocks, calls, steps=30, lr=3e-3)
    assert gap() < before
    assert checksums(blocks) == teacher_sum
    assert not student.training


def test_distill_refuses_without_inputs_or_trainable_weights(blocks, tokens):
    student = copy.deepcopy(blocks)
    with pytest.raises(ActionError, match="captured"):
        distill(student, blocks, [], steps=2)
    student.requires_grad_(False)
    with pytest.raises(ActionError, match="trainable"):
        distill(student, blocks, [((tokens,), {})], steps=2)
    assert distill(student, blocks, [], steps=0) == 0.0


def test_every_registered_action_has_a_spec():
    assert set(ACTIONS) == {
        "int8_dynamic",
        "bf16",
        "prune_ffn",
        "prune_heads",
        "prune_channels",
        "lowrank",
        "drop_blocks",
        "unstructured",
    }
    assert [v["backend"] for v in ACTIONS["int8_dynamic"].variants] == ["torchao", "legacy"]
