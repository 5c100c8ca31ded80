"""Depth reduction: drop the hottest transformer blocks, then distill from the model as it was.

Blocks are the repeated children of an ``nn.ModuleList`` (``encoder.layer.3``, ``h.5``). After
dropping, a short knowledge-distillation run teaches the shallower student to match the
teacher's softened outputs on the calls captured from the workload, so no labels are needed.
:func:`distill` also heals the other lossy actions (pruning, low-rank).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from greenprof.recommend.actions.base import (
    ActionContext,
    ActionError,
    ActionSpec,
    ModelCall,
    check_targets,
    is_excluded,
)
from greenprof.recommend.actions.modules import get_module
from greenprof.recommend.outputs import main_tensor

logger = logging.getLogger(__name__)

#: Config attributes that hold the number of blocks in common model families.
DEPTH_ATTRS = ("num_hidden_layers", "n_layer", "num_layers")


def drop_blocks(model: nn.Module, targets: Sequence[str], context: ActionContext) -> None:
    """Remove the blocks ``targets`` from their ``nn.ModuleList``, in place.

    Raises:
        ActionError: a target is not an element of a ModuleList, or no block would be left.
    """
    check_targets(model, targets, context)
    by_list: dict[str, set[int]] = defaultdict(set)
    for name in targets:
        parent, _, index = name.rpartition(".")
        if not index.isdigit() or not isinstance(get_module(model, parent), nn.ModuleList):
            raise ActionError(f"{name!r} is not a block of an nn.ModuleList")
        by_list[parent].add(int(index))
    for parent, dropped in by_list.items():
        blocks = get_module(model, parent)
        kept = [block for i, block in enumerate(blocks) if i not in dropped]
        if not kept:
            raise ActionError(f"dropping {len(dropped)} blocks would leave {parent!r} empty")
        old_depth = len(blocks)
        blocks._modules.clear()
        blocks.extend(kept)
        _renumber(blocks)
        _update_config(model, old_depth, len(kept))


def _renumber(blocks: nn.ModuleList) -> None:
    # Caches index their entries by layer_idx; gaps left by dropped blocks would break them.
    for index, block in enumerate(blocks):
        for module in block.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = index


def _update_config(model: nn.Module, old_depth: int, new_depth: int) -> None:
    config = getattr(model, "config", None)
    for attr in DEPTH_ATTRS:
        if getattr(config, attr, None) == old_depth:
            setattr(config, attr, new_depth)


def distill(
    student: nn.Module,
    teacher: nn.Module,
    calls: Sequence[ModelCall],
    *,
    steps: int,
    temperature: float = 2.0,
    lr: float = 3e-4,
    exclude: Sequence[str] = (),
) -> float:
    """Train ``student`` for ``steps`` steps to match ``teacher``'s softened outputs.

    Args:
        student: the changed model; its float parameters are trained in place.
        teacher: the model before the change; left untouched.
        calls: model inputs captured from the workload, cycled through.
        steps: optimizer steps; 0 does nothing.
        temperature: softmax temperature; higher shares more of the teacher's ranking.
        lr: AdamW learning rate.
        exclude: module names whose parameters (and those below them) stay frozen.

    Returns:
        The last step's distillation loss (0.0 when ``steps`` is 0).

    Raises:
        ActionError: nothing to train, no inputs, or the student cannot be trained (for
            instance after int8 quantization).
    """
    if steps <= 0:
        return 0.0
    if not calls:
        raise ActionError("no captured model calls to distill on")
    params = [
        p
        for name, p in student.named_parameters()
        if p.is_floating_point() and p.requires_grad and not is_excluded(name, exclude)
    ]
    if not params:
        raise ActionError("the model has no trainable float parameters to distill into")
    optimizer = torch.optim.AdamW(params, lr=lr)
    was_training, teacher_was_training = student.training, teacher.training
    student.train()
    teacher.eval()
    loss = torch.zeros(())
    try:
        for step in range(steps):
            args, kwargs = calls[step % len(calls)]
            with torch.no_grad():
                target = main_tensor(teacher(*args, **kwargs)).float()
            output = main_tensor(student(*args, **kwargs)).float()
            loss = _kd_loss(output, target, temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    except RuntimeError as exc:
        raise ActionError(f"distillation failed: {exc}") from None
    finally:
        student.train(was_training)
        teacher.train(teacher_was_training)
    last = float(loss.detach())
    logger.debug("distilled %s steps, last loss %s", steps, last)
    return last


def _kd_loss(output: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    classes = output.shape[-1]
    log_student = F.log_softmax(output.reshape(-1, classes) / temperature, dim=-1)
    log_teacher = F.log_softmax(target.reshape(-1, classes) / temperature, dim=-1)
    # T^2 keeps gradient size independent of the temperature (Hinton et al., 2015).
    kl = F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean")
    return kl * temperature**2


SPEC = ActionSpec(name="drop_blocks", apply=drop_blocks, heal=True)
