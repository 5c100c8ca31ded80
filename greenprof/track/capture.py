"""Keep one real call of each root model, so that its layers can be replayed after the run.

Calibration by replay (see :mod:`greenprof.track.replay`) needs inputs that the user's model really
takes. A global forward hook, installed for the first steps of a profile only, keeps the first call
of every root model that finishes: the module, its positional and keyword inputs (references; the
replay copies the root's tensors before it runs anything), the grad mode, the autocast state and the
train/eval flags. Strong references keep a model alive that the script has dropped, so that
``greenprof run`` can calibrate a model built inside a function that has returned; they are released
when the profile ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn.modules import module as nn_module

logger = logging.getLogger(__name__)


@dataclass
class CapturedCall:
    """One real call of a root model.

    Attributes:
        module: the root model.
        args: positional inputs, as the model received them.
        kwargs: keyword inputs.
        grad_enabled: whether autograd recorded the call.
        autocast: ``{device_type: (enabled, dtype)}`` for the devices with autocast on.
        training: the train/eval flag of every submodule, by qualified name.
    """

    module: torch.nn.Module
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    grad_enabled: bool
    autocast: dict[str, tuple[bool, torch.dtype]] = field(default_factory=dict)
    training: dict[str, bool] = field(default_factory=dict)


def autocast_state() -> dict[str, tuple[bool, torch.dtype]]:
    """Autocast settings now in force, for the devices where it is on."""
    state = {}
    for device in ("cpu", "cuda"):
        try:
            if torch.is_autocast_enabled(device):
                state[device] = (True, torch.get_autocast_dtype(device))
        except (RuntimeError, TypeError):  # an old torch or a device type it does not know
            continue
    return state


class CallCapture:
    """Keeps the first finished call of every root model while armed.

    Args:
        is_root: tells whether a module is a root model (the outermost module called).

    Example:
        >>> capture = CallCapture(lambda m: True)
        >>> capture.install()
        >>> _ = torch.nn.Linear(2, 2)(torch.ones(1, 2))
        >>> capture.disarm()
        >>> len(capture.calls)
        1
    """

    def __init__(self, is_root: Callable[[torch.nn.Module], bool]) -> None:
        self._is_root = is_root
        self.calls: dict[int, CapturedCall] = {}
        self._handle: Any = None

    def install(self) -> None:
        """Start keeping calls."""
        if self._handle is None:
            self._handle = nn_module.register_module_forward_hook(self._after, with_kwargs=True)

    def disarm(self) -> None:
        """Stop looking at module calls (what was kept stays)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def release(self) -> None:
        """Drop every reference to the user's models and inputs."""
        self.disarm()
        self.calls = {}

    def _after(self, module: torch.nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        try:
            if id(module) in self.calls or not self._is_root(module):
                return
            if torch.compiler.is_compiling():
                return
            self.calls[id(module)] = CapturedCall(
                module,
                tuple(args),
                dict(kwargs or {}),
                torch.is_grad_enabled(),
                autocast_state(),
                {name: sub.training for name, sub in module.named_modules()},
            )
        except Exception:  # never raise into the user's loop
            logger.debug("greenprof: capturing a call failed", exc_info=True)
