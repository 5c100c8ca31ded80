"""Structured pruning with Torch-Pruning: layers physically lose neurons, heads or channels.

Torch-Pruning traces the model once (on a call captured from the workload) to learn which
layers are coupled, so removing FFN neurons also removes the matching inputs of the next layer,
and removing a head removes its query/key/value outputs and the output projection's inputs.
Channels to remove are those with the smallest group L2 norm.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from greenprof.recommend.actions.base import (
    ActionContext,
    ActionError,
    ActionSpec,
    check_targets,
    is_excluded,
)
from greenprof.recommend.actions.modules import as_linear, get_module, is_conv1d, is_float_weight
from greenprof.recommend.outputs import main_tensor

#: Child names of the query/key/value projections in common attention implementations.
QKV_NAMES = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"), ("q", "k", "v"))
HEAD_SIZE_ATTRS = ("attention_head_size", "head_dim", "head_size")
HEAD_COUNT_ATTRS = ("num_attention_heads", "num_heads", "n_heads")


def prune_ffn(
    model: nn.Module, targets: Sequence[str], context: ActionContext, *, ratio: float = 0.25
) -> None:
    """Remove ``ratio`` of the hidden neurons of each feed-forward layer in ``targets``.

    A target is the expanding linear layer of an FFN (e.g. ``intermediate.dense``); the layer that
    consumes its output shrinks with it.

    Raises:
        ActionError: a target is not a float linear layer, or its neurons are tied to the
            residual stream (pruning them would shrink the model width) or to excluded layers.
    """
    check_targets(model, targets, context)
    for name in targets:
        _linearize_siblings(model, name)
    tp, graph = _graph(model, context)
    for name in targets:
        layer = get_module(model, name)
        if not is_float_weight(layer):
            raise ActionError(f"{name!r} has no float weight to prune")
        _prune_weakest(tp, graph, model, layer, name, context, ratio=ratio, hidden_only=True)


def prune_heads(
    model: nn.Module, targets: Sequence[str], context: ActionContext, *, ratio: float = 0.25
) -> None:
    """Remove ``ratio`` of the heads (at least one) of each attention module in ``targets``.

    A target is a self-attention module with separate query/key/value linear children and a head
    size attribute (``attention_head_size``, ``head_dim`` or ``head_size``), as in BERT.

    Raises:
        ActionError: the target is not such a module, or pruning would leave no head.
    """
    check_targets(model, targets, context)
    tp, graph = _graph(model, context)
    for name in targets:
        attention = get_module(model, name)
        query, key, value = qkv_layers(attention, name)
        size = head_size(attention, name)
        heads = value.out_features // size
        count = _count(heads, ratio, name)
        group = graph.get_pruning_group(
            value, tp.prune_linear_out_channels, idxs=list(range(value.out_features))
        )
        _check_group(group, model, name, context, hidden_only=True)
        coupled = {id(dep.target.module) for dep, _ in group}
        if not {id(query), id(key)} <= coupled:
            raise ActionError(f"{name!r}: query and key are not coupled to value; heads unclear")
        scores = tp.importance.GroupMagnitudeImportance(p=2)(group)
        weakest = scores.reshape(heads, size).sum(1).argsort()[:count]
        channels = (weakest[:, None] * size + torch.arange(size)).flatten()
        _prune(graph, value, tp.prune_linear_out_channels, channels)
        for attr in HEAD_COUNT_ATTRS:
            if isinstance(getattr(attention, attr, None), int):
                setattr(attention, attr, heads - count)
        if isinstance(getattr(attention, "all_head_size", None), int):
            attention.all_head_size = (heads - count) * size


def prune_channels(
    model: nn.Module, targets: Sequence[str], context: ActionContext, *, ratio: float = 0.25
) -> None:
    """Remove ``ratio`` of the output channels of each ``nn.Conv2d`` in ``targets``.

    Coupled layers (batch norm, the next convolution, residual partners) shrink with it.

    Raises:
        ActionError: a target is not a float ``Conv2d``, or an excluded layer is coupled to it.
    """
    check_targets(model, targets, context)
    tp, graph = _graph(model, context)
    for name in targets:
        conv = get_module(model, name)
        if not isinstance(conv, nn.Conv2d) or not is_float_weight(conv):
            raise ActionError(f"{name!r} is not a float Conv2d")
        _prune_weakest(tp, graph, model, conv, name, context, ratio=ratio, hidden_only=False)


def _graph(model: nn.Module, context: ActionContext) -> tuple[Any, Any]:
    try:
        import torch_pruning as tp
    except ImportError as exc:
        raise ActionError(f"torch-pruning missing ({exc}); pip install torch-pruning") from None
    if not context.calls:
        raise ActionError("no captured model call to trace the layer dependencies with")
    args, kwargs = context.calls[0]
    if "use_cache" in inspect.signature(model.forward).parameters:
        # A key/value cache adds concatenations Torch-Pruning cannot size; tracing needs none.
        kwargs = {**kwargs, "use_cache": False}
    try:
        graph = tp.DependencyGraph().build_dependency(
            model,
            example_inputs=(args, kwargs),
            forward_fn=lambda m, call: m(*call[0], **call[1]),
            output_transform=main_tensor,
            verbose=False,
        )
    except Exception as exc:  # noqa: BLE001 - any tracing failure means "cannot prune this model"
        raise ActionError(f"Torch-Pruning could not trace the model: {exc}") from None
    return tp, graph


def _prune_weakest(
    tp: Any,
    graph: Any,
    model: nn.Module,
    layer: nn.Module,
    name: str,
    context: ActionContext,
    *,
    ratio: float,
    hidden_only: bool,
) -> None:
    """Remove the ``ratio`` share of ``layer``'s outputs whose coupled group norm is smallest."""
    fn = (
        tp.prune_conv_out_channels if isinstance(layer, nn.Conv2d) else tp.prune_linear_out_channels
    )
    total = int(layer.weight.shape[0])
    group = graph.get_pruning_group(layer, fn, idxs=list(range(total)))
    _check_group(group, model, name, context, hidden_only=hidden_only)
    scores = tp.importance.GroupMagnitudeImportance(p=2)(group)
    _prune(graph, layer, fn, scores.argsort()[: _count(total, ratio, name)])


def _check_group(
    group: Any, model: nn.Module, name: str, context: ActionContext, *, hidden_only: bool
) -> None:
    """Refuse groups that reach excluded layers, or (``hidden_only``) the residual stream."""
    names = {id(module): n for n, module in model.named_modules()}
    for dep, _ in group:
        module = dep.target.module
        if not isinstance(module, nn.Module):
            continue
        coupled = names.get(id(module), "")
        if is_excluded(coupled, context.exclude):
            raise ActionError(f"pruning {name!r} would change excluded {coupled!r}")
        if hidden_only and isinstance(module, (nn.LayerNorm, nn.Embedding)):
            raise ActionError(
                f"pruning {name!r} would shrink the model width ({coupled!r} is coupled to it)"
            )


def _prune(graph: Any, module: nn.Module, fn: Any, idxs: torch.Tensor) -> None:
    graph.get_pruning_group(module, fn, idxs=sorted(int(i) for i in idxs)).prune()


def _count(total: int, ratio: float, name: str) -> int:
    if not 0.0 < ratio < 1.0:
        raise ActionError(f"ratio must be in (0, 1), got {ratio}")
    count = max(1, int(round(ratio * total)))
    if count >= total:
        raise ActionError(f"{name!r} has only {total}; pruning {ratio:.0%} would leave none")
    return count


def _linearize_siblings(model: nn.Module, name: str) -> None:
    """Turn GPT-2 ``Conv1D`` layers next to ``name`` into ``nn.Linear`` Torch-Pruning can follow."""
    parent = name.rpartition(".")[0]
    for child, module in list(get_module(model, parent).named_children()):
        if is_conv1d(module) or f"{parent}.{child}".lstrip(".") == name:
            as_linear(model, f"{parent}.{child}".lstrip("."))


def qkv_layers(attention: nn.Module, name: str = "") -> tuple[nn.Linear, nn.Linear, nn.Linear]:
    """Return the query, key and value layers of an attention module, or raise ActionError."""
    children = dict(attention.named_children())
    for names in QKV_NAMES:
        layers = [children.get(n) for n in names]
        if all(type(layer) is nn.Linear and is_float_weight(layer) for layer in layers):
            return layers[0], layers[1], layers[2]
    raise ActionError(f"{name!r} has no separate float query/key/value linear layers")


def head_size(attention: nn.Module, name: str = "") -> int:
    """Return the head size an attention module declares, or raise ActionError."""
    for attr in HEAD_SIZE_ATTRS:
        value = getattr(attention, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ActionError(f"{name!r} does not say its head size ({', '.join(HEAD_SIZE_ATTRS)})")


FFN_SPEC = ActionSpec(name="prune_ffn", apply=prune_ffn, heal=True)
HEADS_SPEC = ActionSpec(name="prune_heads", apply=prune_heads, heal=True)
CHANNELS_SPEC = ActionSpec(name="prune_channels", apply=prune_channels, heal=True)
