"""int8 dynamic quantization of linear layers: weights int8, activations quantized per call.

Two implementations exist and neither wins everywhere on CPU: torchao's ``quantize_`` is the
maintained path and fast at large widths, while the deprecated ``quantize_dynamic`` (fbgemm
kernels) can be much faster on narrow layers. The action offers both as variants and the loop's
re-profiling picks whichever is cheaper on the user's model and machine.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib.util import find_spec

from torch import nn

from greenprof.recommend.actions.base import ActionContext, ActionError, ActionSpec, check_targets
from greenprof.recommend.actions.modules import as_linear, is_float_weight

logger = logging.getLogger(__name__)

#: The legacy path is offered only while its module exists (it is meant to be deleted one day).
BACKENDS = ("torchao", "legacy") if find_spec(f"{__package__}.legacy_quantize") else ("torchao",)


def apply(
    model: nn.Module,
    targets: Sequence[str],
    context: ActionContext,
    *,
    backend: str = "torchao",
) -> None:
    """Quantize the linear layers ``targets`` of ``model`` to int8 dynamic, in place.

    Args:
        model: the model to change.
        targets: names of ``nn.Linear`` (or GPT-2 ``Conv1D``) layers with float32 weights.
        context: exclusions.
        backend: ``"torchao"`` or ``"legacy"`` (``torch.ao.quantization.quantize_dynamic``).

    Raises:
        ActionError: a target is not a float32 linear layer, or the backend is unavailable.
    """
    check_targets(model, targets, context)
    names = list(targets)
    for name in names:
        layer = as_linear(model, name)
        if not is_float_weight(layer) or layer.weight.dtype.itemsize != 4:
            raise ActionError(f"{name!r} has no float32 weight to quantize")
    if backend == "torchao":
        _torchao(model, names)
    elif backend == "legacy":
        try:
            from greenprof.recommend.actions import legacy_quantize
        except ImportError:
            raise ActionError("the legacy quantize_dynamic path is not available") from None
        legacy_quantize.quantize(model, names)
    else:
        raise ActionError(f"unknown int8 backend {backend!r}; use one of {', '.join(BACKENDS)}")


def _torchao(model: nn.Module, names: list[str]) -> None:
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    except ImportError as exc:
        raise ActionError(f"torchao is not installed ({exc}); pip install torchao") from None
    wanted = set(names)
    quantize_(
        model,
        Int8DynamicActivationInt8WeightConfig(),
        filter_fn=lambda module, fqn: fqn in wanted and isinstance(module, nn.Linear),
    )
    logger.debug("torchao int8 dynamic on %s layers", len(wanted))


SPEC = ActionSpec(
    name="int8_dynamic",
    apply=apply,
    variants=tuple({"backend": backend} for backend in BACKENDS),
)
