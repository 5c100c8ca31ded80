"""Greenprof's ``nn.Module._call_impl``: how every module call reaches the recorder.

Global forward hooks (``register_module_forward_hook``) take torch's slow path through
``Module._call_impl`` on every module call of the process: it builds the lists of hooks to run and
calls each through its generic machinery, about 1.2 us a call before a hook does anything. A
decoding loop of a small language model makes thousands of module calls per generated token.
Instead, while a profile runs, ``nn.Module._call_impl`` is a wrapper around the original (much as
``torch.fx`` patches ``nn.Module.__call__`` while tracing): torch keeps its fast path, and the
wrapper holds the module's key between the call's start and end, so nothing is looked up twice.
``_call_impl`` rather than ``__call__``: ``torch.compile`` and ``torch.compiler.disable`` keep
bound ``__call__`` methods made before the profile, which still look ``_call_impl`` up.

The common call, a known module of the main thread inside an open root call without CUDA timing,
is handled inline: one event at each end into the recorder's flat buffer, and the output's
autograd node hooked for the backward. Everything else (roots, first calls, other threads, CUDA,
recomputes) goes through the recorder's general hooks, which see the same calls in the same order
as global hooks would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch

from greenprof.track.backward import hook_output_backward
from greenprof.track.compiling import COMPILER, dynamo_compiling
from greenprof.track.events import FWD_ENTER, FWD_EXIT

_grad_enabled = torch.is_grad_enabled
_get_ident = threading.get_ident
_Module = torch.nn.Module


def is_greenprof_call(call: Any) -> bool:
    """True when ``call`` (``nn.Module._call_impl`` now) is a wrapper made here."""
    return getattr(call, "__module__", None) == __name__


# ``recorder`` is a :class:`~.hooks.HookRecorder`; typed ``Any`` so that this module, which the
# recorder imports, does not import it back.
def make_module_call(recorder: Any, original: Callable[..., Any]) -> Callable[..., Any]:
    """A ``nn.Module._call_impl`` that tells ``recorder`` of every module call.

    Args:
        recorder: the recorder the events go to; once it is not ``live`` the wrapper only calls
            ``original`` (a module compiled while it was in place may keep it).
        original: the ``nn.Module._call_impl`` it replaces, called for the call itself.
    """
    ids = recorder._ids
    main = recorder._main
    stack = main.stack
    clock = recorder._clock
    main_ident = recorder._main_ident
    before = recorder._forward_pre
    after = recorder._forward_post
    put = recorder._buf.extend  # the buffer is emptied in place, never replaced

    def general(module: _Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        before(module, args)
        try:
            output = original(module, *args, **kwargs)
        except BaseException:
            # As torch calls an always-called hook when the forward raised: no output.
            after(module, args, None)
            raise
        after(module, args, kwargs, output)
        return output

    def _call_impl(self: _Module, *args: Any, **kwargs: Any) -> Any:
        # The compile check comes first: dynamo folds it, and traces nothing else of ours.
        if dynamo_compiling() or COMPILER._is_compiling_flag or not recorder.live:
            return original(self, *args, **kwargs)
        key = ids.get(id(self))
        if key is None or not stack or recorder.cuda is not None or _get_ident() != main_ident:
            return general(self, args, kwargs)
        # Faults are counted, never raised into the user's loop (try costs nothing in 3.11).
        try:
            put((clock(), FWD_ENTER, key))
        except Exception:
            recorder._fault("forward pre-hook")
            return original(self, *args, **kwargs)
        stack.append(key)
        try:
            output = original(self, *args, **kwargs)
        except BaseException:
            stack.pop()
            try:
                put((clock(), FWD_EXIT, key))
            except Exception:
                recorder._fault("forward hook")
            raise
        stack.pop()
        try:
            put((clock(), FWD_EXIT, key))
            if _grad_enabled():
                hook_output_backward(recorder, key, args, kwargs, output)
        except Exception:
            recorder._fault("forward hook")
        return output

    return _call_impl
