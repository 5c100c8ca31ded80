"""Process-wide module and optimizer hooks that record who runs when.

Tracking only: this module turns module calls, backward passes and optimizer steps into a flat
buffer of ``(t_ns, code, key)`` integers. It knows nothing about joules; :mod:`~.timeline` turns
the events into spans and :mod:`greenprof.attribute.fit` prices them.

Module calls reach the recorder through :mod:`~.calls`; backward timing, the expensive part of
hooking a training loop, is in :mod:`~.backward`.
"""

from __future__ import annotations

import logging
import threading
from array import array
from collections.abc import Callable
from typing import Any

import torch
from torch.nn.modules import module as nn_module
from torch.optim import optimizer as optim_module

from greenprof.clock import now_ns
from greenprof.cuda_state import cuda_in_use, stream_capturing
from greenprof.track.active import active_recorder as active_recorder  # re-exported
from greenprof.track.active import claim, release
from greenprof.track.backward import HookPool, hook_output_backward
from greenprof.track.calls import make_module_call
from greenprof.track.cuda_clock import DeviceClocks, module_device
from greenprof.track.events import (
    AUTO_EVAL,
    BWD_PASS_END,
    FWD_ENTER,
    FWD_EXIT,
    OPT_ENTER,
    OPT_EXIT,
    REGION_ENTER,
    REGION_EXIT,
    EventBuffer,
)
from greenprof.track.names import KeyInfo, KeyRegistry
from greenprof.track.recompute import enter_recompute, exit_recompute
from greenprof.track.threads import ThreadState

_grad_enabled = torch.is_grad_enabled
# -1 outside the autograd engine: a module called while it is not -1 runs inside a backward pass
# (activation checkpointing's recompute), as torch.distributed._tools.mod_tracker tells it.
_graph_task_id = torch._C._current_graph_task_id
_get_ident = threading.get_ident

logger = logging.getLogger(__name__)


class HookRecorder:
    """Installs process-wide hooks and records enter/exit events.

    Use :func:`greenprof.profile` rather than this class directly. The buffer grows until the owner
    drains it with :meth:`drain`; ``step_callback`` is called after every optimizer step and every
    outermost forward, where the owner may drain, so memory stays bounded.

    Example:
        >>> rec = HookRecorder()
        >>> with rec:  # doctest: +SKIP
        ...     model(x)
        >>> list(rec.drain())[:2]  # doctest: +SKIP
        [(1234, 0, 0), (1240, 0, 1)]
    """

    def __init__(self, clock: Callable[[], int] = now_ns) -> None:
        self._clock = clock
        # Flat (t_ns, code, key) triples of machine ints: appending to it creates no object the
        # garbage collector tracks, so a long step never triggers a collection on our account.
        self._buf = array("q")
        self._put = self._buf.append
        self._names = KeyRegistry()
        self.keys: list[KeyInfo] = self._names.keys
        self.inconsistencies = 0
        #: False once the hooks are removed: autograd-node hooks still in a graph then do nothing.
        self.live = True
        # The autograd node hooked last and its hook (see track.backward): in a chain, the next
        # module's input. Released when the outermost forward ends: it holds the graph alive.
        self.last_node: Any = None
        self.last_hook: Any = None
        self.hook_pool = HookPool()
        self.step_callback: Callable[[], None] | None = None
        self._ids: dict[int, int] = self._names.ids  # read on every module call
        self._in_backward = False
        # Each thread calling modules has its own stack; the installing thread's is at hand.
        self._main = ThreadState(0)
        self._main_ident = _get_ident()
        self._threads: dict[int, ThreadState] = {}
        self._stack_keys = self._main.stack
        self._evaluating = 0  # threads whose open outermost forward runs without gradients
        self._register_lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self.recomputing = 0  # depth of module calls recomputed inside backward (.recompute)
        self._handles: list[Any] = []
        self._call: Callable[..., Any] | None = None  # our nn.Module._call_impl while installed
        self._original_call: Callable[..., Any] = nn_module.Module._call_impl
        self._lock = threading.Lock()
        self.cuda: DeviceClocks | None = None
        self._cuda_from = 0  # events before this one were recorded before CUDA timing began
        self._cuda_device: dict[int, int] = {}  # key -> CUDA device its work runs on
        self._cuda_last = 0  # device of keys that have none of their own (optimizers, regions)

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> HookRecorder:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def install(self) -> None:
        """Install the hooks for all modules; only one recorder may be active at a time.

        Raises:
            ProfilerError: when another recorder is already active.
        """
        claim(self)
        self._main_ident = _get_ident()
        self.live = True
        # Module calls come through a wrapper of nn.Module._call_impl rather than global forward
        # hooks, which would put every module call of the process on torch's slow path.
        self._original_call = nn_module.Module._call_impl
        self._call = make_module_call(self, self._original_call)
        nn_module.Module._call_impl = self._call
        self._handles = [
            optim_module.register_optimizer_step_pre_hook(self._optimizer_pre),
            optim_module.register_optimizer_step_post_hook(self._optimizer_post),
        ]
        if cuda_in_use():
            self.enable_cuda()

    def remove(self) -> None:
        """Remove every hook this recorder installed (safe to call twice)."""
        self.live = False
        self.last_node = self.last_hook = None
        # Another wrapper put on top of ours stays; ours, below it, then only passes calls on.
        if self._call is not None and nn_module.Module._call_impl is self._call:
            nn_module.Module._call_impl = self._original_call
        self._call = None
        for handle in self._handles:
            handle.remove()
        self._handles = []
        release(self)

    @property
    def events(self) -> list[tuple[int, int, int]]:
        """The events recorded and not yet drained, as ``(t_ns, code, key)`` (a copy)."""
        buf = self._buf
        return list(zip(buf[0::3], buf[1::3], buf[2::3], strict=True))

    @property
    def pending(self) -> int:
        """How many events wait to be drained."""
        return len(self._buf) // 3

    def _emit(self, code: int, key: int, t_ns: int | None = None) -> None:
        if t_ns is None:
            t_ns = self._clock()
        if self.cuda is None:
            self._buf.extend((t_ns, code, key))  # the tuple is freed at once: not tracked
            return
        if stream_capturing():
            # A CUDA graph is being captured: an event recorded now would be part of the graph,
            # and the calls seen now are not run now (the graph's replays run without hooks).
            return
        device = self._cuda_device.get(key, self._cuda_last)
        with self._lock:  # backward hooks on a GPU run on autograd's device threads
            self._buf.extend((t_ns, code, key))
            self.cuda.mark(device)

    def _note_cuda_device(
        self, key: int, module: torch.nn.Module, args: Any, stack: list[int]
    ) -> None:
        """Remember, once per module, the device its work runs on (where its events go).

        ``stack`` is the calling thread's stack of open modules, ``key`` on top.
        """
        if key not in self._cuda_device:
            device = module_device(module, args)
            if device is None:  # no CUDA tensor of its own: its caller's device
                device = (
                    self._cuda_device.get(stack[-2], self._cuda_last)
                    if len(stack) > 1
                    else self._cuda_last
                )
            self._cuda_device[key] = device
        self._cuda_last = self._cuda_device[key]

    def enable_cuda(self, cuda: DeviceClocks | None = None, *, anchor_now: bool = True) -> None:
        """Record a CUDA event with every hook event from now on (see :mod:`~.cuda_clock`).

        Args:
            cuda: the clocks to use; by default one per device, made when first used.
            anchor_now: anchor the current device's clock now, waiting for it once (profile
                start); False from inside hooks, where nothing waits.
        """
        with self._lock:
            if self.cuda is None:
                current = torch.cuda.current_device() if cuda is None else 0
                self.cuda = cuda or DeviceClocks(anchor_now=(current,) if anchor_now else ())
                self._cuda_last = current
                self._cuda_from = self.pending

    def drain(self, *, final: bool = False) -> EventBuffer:
        """Hand over the events recorded so far (with GPU times where CUDA is in use).

        The events come as a flat buffer that iterates as ``(t_ns, code, key)`` triples: a
        consumer that unpacks each triple allocates nothing per event, since ``zip`` reuses its
        result tuple; :meth:`~.timeline.Timeline.feed` reads long runs of it in bulk.

        Args:
            final: wait for the device so that every event can be resolved (end of profile).
        """
        return self.drain_clocks(final=final)[0]

    def drain_clocks(self, *, final: bool = False) -> tuple[EventBuffer, EventBuffer | None]:
        """Like :meth:`drain`, and the same events on the host clock where CUDA is in use.

        Returns:
            The events with GPU times where CUDA is in use, and the same events with the host
            times of their hooks (None without CUDA): CPU sensors are priced on the second.
        """
        if self.cuda is None:
            with self._lock:
                flat = self._take(len(self._buf))
            return EventBuffer(flat), None
        if final:
            self.cuda.finish()
        with self._lock:
            resolved = self.cuda.resolve()
            host = self._take(3 * (self._cuda_from + len(resolved)))
            flat = array("q", host)
            # GPU times replace the host times of the events that have a CUDA mark.
            flat[3 * self._cuda_from :: 3] = array("q", resolved)
            self._cuda_from = 0
        return EventBuffer(flat), EventBuffer(host)

    def _take(self, n: int) -> array:
        """Remove and return the first ``n`` slots of the buffer (caller holds the lock)."""
        flat = self._buf[:n]
        del self._buf[:n]
        return flat

    # ------------------------------------------------------------ naming
    def key_of_module(self, obj: Any) -> int | None:
        """The key of a module or optimizer seen so far, or None."""
        return self._ids.get(id(obj))

    def is_root(self, obj: Any) -> bool:
        """True when ``obj`` was first seen as the outermost module called (a root model)."""
        key = self._ids.get(id(obj))
        return key is not None and self.keys[key].root == key

    @property
    def compiled(self) -> list[str]:
        """Names of the compiled modules seen: their insides have no rows of their own."""
        return self._names.compiled

    def _key_of(self, obj: Any) -> int:
        key = self._ids.get(id(obj))
        if key is None:
            key = self._register(obj, self._thread())
        return -1 if key is None else key

    def _register(self, obj: Any, state: ThreadState) -> int | None:
        """The key of a module or optimizer met for the first time; None: it gets no row."""
        if id(obj) in self._names.skipped:
            return None
        with self._register_lock:  # threads may meet new modules at once
            key = self._ids.get(id(obj))
            if key is None:
                key = self._names.register(obj, state.stack, state.root)
            return key

    def _thread(self) -> ThreadState:
        """The calling thread's state (made on its first module call)."""
        ident = _get_ident()
        if ident == self._main_ident:
            return self._main
        state = self._threads.get(ident)
        if state is None:
            with self._register_lock:
                state = self._threads[ident] = ThreadState(len(self._threads) + 1)
        return state

    # ------------------------------------------------------------ hooks
    # The hooks below run on every module call of the user's loop: they stay short, and append
    # to the event list directly unless CUDA events are needed.
    # The general path of module calls (see track.calls, which leaves compiled code alone).
    def _forward_pre(self, module: torch.nn.Module, args: Any) -> None:
        try:
            state = self._main if _get_ident() == self._main_ident else self._thread()
            key = self._ids.get(id(module))
            if key is None:
                key = self._register(module, state)
                if key is None:
                    return
            stack = state.stack
            if not stack:
                if _graph_task_id() != -1:
                    enter_recompute(self, key)
                    return
                self._enter_root(key, state)
            stack.append(key)
            if self.cuda is None:
                self._buf.extend((self._clock(), FWD_ENTER + state.tag, key))
            else:
                self._note_cuda_device(key, module, args, stack)
                self._emit(FWD_ENTER + state.tag, key)
        except Exception:  # never raise into the user's training loop
            self._fault("forward pre-hook")

    def _enter_root(self, key: int, state: ThreadState) -> None:
        state.root = self.keys[key].root
        if self._in_backward:
            # The engine never ran our end-of-backward callback (the pass raised).
            self._in_backward = False
            self._emit(BWD_PASS_END, -1)
        if not _grad_enabled():  # evaluation; the session keeps the label if the run trains
            state.evaluating = True
            with self._register_lock:
                self._evaluating += 1
                if self._evaluating == 1:  # one eval region while any thread evaluates
                    self._emit(REGION_ENTER, AUTO_EVAL)

    def _forward_post(
        self, module: torch.nn.Module, args: Any, kwargs: Any, output: Any = None
    ) -> None:
        # When the forward raised, it is called without the kwargs (module, args, None), as
        # torch calls an always-called hook: ``output`` is then None and no backward is hooked.
        try:
            t_ns = self._clock()
            state = self._main if _get_ident() == self._main_ident else self._thread()
            stack = state.stack
            if not stack:  # no forward open: a recompute inside backward (see _forward_pre)
                exit_recompute(self, module, args, kwargs, output)
                return
            key = self._ids.get(id(module))
            if key is None:
                return  # its pre-hook recorded nothing (it gets no row, or started before us)
            if self.cuda is None:
                self._buf.extend((t_ns, FWD_EXIT + state.tag, key))
            else:
                self._emit(FWD_EXIT + state.tag, key, t_ns)
            stack.pop()
            if _grad_enabled():
                hook_output_backward(self, key, args, kwargs, output)
            if not stack:
                self.last_node = None
                if state.evaluating:
                    state.evaluating = False
                    with self._register_lock:
                        self._evaluating -= 1
                        if not self._evaluating:
                            self._emit(REGION_EXIT, AUTO_EVAL)
                self._at_step_boundary()
        except Exception:
            self._fault("forward hook")

    def _backward_pass_end(self) -> None:
        self._in_backward = False
        self._emit(BWD_PASS_END, -1)

    def _optimizer_pre(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        try:
            self._emit(OPT_ENTER, self._key_of(optimizer))
        except Exception:
            self._fault("optimizer pre-hook")

    def _optimizer_post(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        try:
            self._emit(OPT_EXIT, self._key_of(optimizer))
            self._at_step_boundary()
        except Exception:
            self._fault("optimizer hook")

    def _at_step_boundary(self) -> None:
        # is_initialized() first: it reads a flag, where cuda_in_use() also asks torch whether
        # CUDA is available, which took ~18 us per call inside a training step (two calls a step).
        if self.cuda is None and torch.cuda.is_initialized() and cuda_in_use():
            # The model moved to the GPU inside the profiled block: time GPU work from now on.
            self.enable_cuda(anchor_now=False)
        # Threads end their steps at once: one drains, the others carry on without waiting.
        if self.step_callback is not None and self._drain_lock.acquire(blocking=False):
            try:
                self.step_callback()
            finally:
                self._drain_lock.release()

    def _fault(self, where: str) -> None:
        self.inconsistencies += 1
        logger.debug("greenprof: error in %s (ignored)", where, exc_info=True)
