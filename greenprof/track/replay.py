"""Replay captured layers alone, in windows whose composition greenprof chooses.

Energy counters update every 20-100 ms, layers take micro- to milliseconds: the run's own windows
all hold the same mix of layers and cannot tell one layer's power from another's. After the run,
each root model's captured call (:mod:`greenprof.track.capture`) is run once more; when a planned
module has finished its call, that module runs alone in a tight loop with the same inputs, through
its own ``__call__`` (so its hooks run, as FSDP's and the user's must), for its slot: forward
alone, then forward plus backward through ``torch.autograd.grad`` with a stand-in output gradient
of ones (no ``.grad`` accumulates). The
profile's hook recorder stays installed, so every replay is recorded like the run: windows of known
composition for the power fit.

Nothing of the user's run changes: torch's CPU and CUDA random states, every buffer (BatchNorm's
running statistics) and the train/eval flags are restored, the root's input tensors are copied
before use, parameters are never updated. A module whose replay raises is skipped and recorded;
out-of-memory releases the CUDA cache and marks the module.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from greenprof.clock import now_ns
from greenprof.cuda_state import cuda_in_use
from greenprof.track.capture import CapturedCall

logger = logging.getLogger(__name__)


@dataclass
class ReplayReport:
    """What the replays did.

    Attributes:
        replayed_s: seconds of replay per key (forward and forward+backward together).
        skipped: why a planned key was not replayed, by key.
        roots_failed: why a captured root call could not be run again, by root type name.
    """

    replayed_s: dict[int, float] = field(default_factory=dict)
    skipped: dict[int, str] = field(default_factory=dict)
    roots_failed: dict[str, str] = field(default_factory=dict)


def tensors_in(value: Any) -> Iterator[torch.Tensor]:
    """Every tensor inside nested tuples, lists and dicts (model outputs included)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item)
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from tensors_in(item)


def copy_tensors(value: Any) -> Any:
    """``value`` with every tensor replaced by a detached copy (same ``requires_grad``)."""
    if isinstance(value, torch.Tensor):
        copy = value.detach().clone()
        return copy.requires_grad_(value.requires_grad) if copy.is_floating_point() else copy
    if isinstance(value, dict):
        copied = {k: copy_tensors(v) for k, v in value.items()}
        try:
            return type(value)(copied)
        except Exception:  # a mapping type that cannot be rebuilt from a dict
            return copied
    if isinstance(value, tuple):
        return tuple(copy_tensors(v) for v in value)
    if isinstance(value, list):
        return [copy_tensors(v) for v in value]
    return value


class _UserState:
    """The parts of the user's run a replay could change, saved so they can be put back."""

    def __init__(self, roots: list[torch.nn.Module]) -> None:
        self.cpu_rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if cuda_in_use() else None
        self.buffers = [
            (b, b.detach().clone()) for root in roots for b in root.buffers() if b is not None
        ]
        self.training = [(m, m.training) for root in roots for m in root.modules()]

    def restore(self) -> None:
        with torch.no_grad():
            for buffer, saved in self.buffers:
                buffer.copy_(saved)
        for module, training in self.training:
            module.training = training
        torch.set_rng_state(self.cpu_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)


def _call_context(call: CapturedCall) -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    stack.enter_context(torch.set_grad_enabled(call.grad_enabled))
    for device, (enabled, dtype) in call.autocast.items():
        stack.enter_context(torch.autocast(device, dtype=dtype, enabled=enabled))
    return stack


class Replayer:
    """Runs the planned replays.

    Args:
        plan: slot seconds per key: each planned module runs forward alone for that long, then
            forward plus backward for as long again (when autograd can reach it).
        key_of: the recorder's key of a module, or None.
        clock: the shared monotonic clock.
        deadline_ns: no new replay starts after this time.
    """

    def __init__(
        self,
        plan: dict[int, float],
        key_of: Callable[[torch.nn.Module], int | None],
        *,
        clock: Callable[[], int] = now_ns,
        deadline_ns: int | None = None,
    ) -> None:
        self.plan = plan
        self._key_of = key_of
        self._clock = clock
        self._deadline_ns = deadline_ns
        self._busy = False
        self.report = ReplayReport()

    def run(self, calls: list[CapturedCall]) -> ReplayReport:
        """Replay the planned modules of every captured call; the user's state is restored."""
        state = _UserState([c.module for c in calls])
        handles = []
        try:
            for call in calls:
                for sub in call.module.modules():
                    key = self._key_of(sub)
                    if key in self.plan:
                        hook = partial(self._after, key)
                        handles.append(sub.register_forward_hook(hook, with_kwargs=True))
            for call in calls:
                self._run_root(call)
        finally:
            for handle in handles:
                handle.remove()
            state.restore()
        return self.report

    def _run_root(self, call: CapturedCall) -> None:
        too_big = _over_memory_budget((call.args, call.kwargs))
        if too_big:
            self.report.roots_failed[type(call.module).__name__] = too_big
            return
        training = dict(call.training)
        for name, sub in call.module.named_modules():
            sub.training = training.get(name, sub.training)
        try:
            args, kwargs = copy_tensors(call.args), copy_tensors(call.kwargs)
            with _call_context(call):
                call.module(*args, **kwargs)
        except Exception as exc:  # the planned modules it did reach are still replayed
            self.report.roots_failed[type(call.module).__name__] = _reason(exc)
            _release_cuda(exc)

    def _after(
        self, key: int, module: torch.nn.Module, args: Any, kwargs: Any, output: Any
    ) -> None:
        # After the module's real call, once the recorder's own exit hook has closed it (global
        # hooks run before a module's own): the loop's glue between replays is then nobody's
        # self time but the parent's, never the replayed layer's.
        if self._busy or key in self.report.replayed_s or key in self.report.skipped:
            return
        if self._deadline_ns is not None and self._clock() >= self._deadline_ns:
            self.report.skipped[key] = "the calibration budget ran out"
            return
        self._busy = True
        t0 = self._clock()
        try:
            slot_ns = int(self.plan[key] * 1e9)
            self._loop(slot_ns, lambda: module(*args, **kwargs))
            backward = _backward_step(module, args, kwargs)
            if backward is not None:
                self._loop(slot_ns, backward)
            self.report.replayed_s[key] = (self._clock() - t0) * 1e-9
        except Exception as exc:
            self.report.skipped[key] = _reason(exc)
            _release_cuda(exc)
        finally:
            self._busy = False

    def _loop(self, slot_ns: int, step: Callable[[], object]) -> None:
        end = self._clock() + slot_ns
        step()
        while self._clock() < end:
            step()
        if cuda_in_use():
            torch.cuda.synchronize()  # between replays only, never inside the user's run


def _backward_step(module: torch.nn.Module, args: Any, kwargs: Any) -> Callable[[], object] | None:
    """A forward+backward step of ``module`` alone, or None when autograd cannot reach it."""
    if not torch.is_grad_enabled():
        return None
    wrt = [p for p in module.parameters() if p.requires_grad]
    wrt += [t for t in tensors_in((args, kwargs)) if t.requires_grad]
    if not wrt:
        return None
    probe = [t for t in tensors_in(module(*args, **kwargs)) if t.requires_grad]
    if not probe:
        return None
    grads = [torch.ones_like(t) for t in probe]

    def step() -> None:
        outputs = [t for t in tensors_in(module(*args, **kwargs)) if t.requires_grad]
        torch.autograd.grad(outputs, wrt, grads, allow_unused=True)

    return step


#: A root's inputs are copied for the replays only if the copy takes at most this share of the
#: device's free memory.
GPU_MEMORY_SHARE = 0.25


def _over_memory_budget(inputs: Any) -> str:
    """Why copying ``inputs`` on the GPU would be unwise, or ``""``."""
    if not cuda_in_use():
        return ""
    needed: dict[torch.device, int] = {}
    for t in tensors_in(inputs):
        if t.is_cuda:
            needed[t.device] = needed.get(t.device, 0) + t.numel() * t.element_size()
    for device, nbytes in needed.items():
        free, _total = torch.cuda.mem_get_info(device)
        if nbytes > GPU_MEMORY_SHARE * free:
            return (
                f"its inputs ({nbytes / 2**20:.0f} MiB) exceed {GPU_MEMORY_SHARE:.0%} of the free "
                f"memory of {device} ({free / 2**20:.0f} MiB); not replayed"
            )
    return ""


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]


def _release_cuda(exc: BaseException) -> None:
    if isinstance(exc, torch.cuda.OutOfMemoryError) and cuda_in_use():
        torch.cuda.empty_cache()
