"""The one recorder whose hooks are installed in this process, and what a forked child does.

A forked child (a DataLoader worker started with ``fork``) inherits the parent's hooks and
recorder, but its events would reach no one: there the recorder is removed at once, so that the
worker records nothing and keeps no live hook.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from greenprof.errors import ProfilerError

_lock = threading.Lock()
# A :class:`~.hooks.HookRecorder`; typed ``Any``: the recorder imports this module.
_active: Any = None


def claim(recorder: Any) -> None:
    """Make ``recorder`` the active one.

    Raises:
        ProfilerError: when another recorder is already active.
    """
    global _active
    with _lock:
        if _active is not None:
            raise ProfilerError(
                "greenprof is already profiling; nested greenprof.profile() blocks would count "
                "the same joules twice. Profile the outer block only."
            )
        _active = recorder


def release(recorder: Any) -> None:
    """``recorder`` is active no more (nothing happens when another one is)."""
    global _active
    with _lock:
        if _active is recorder:
            _active = None


def active_recorder() -> Any:
    """Return the recorder whose hooks are installed, if any (tests use it to find leaks)."""
    return _active


def _disable_in_forked_child() -> None:
    global _active, _lock
    # Another thread may have held these locks at the fork; that thread does not exist here.
    _lock = threading.Lock()
    recorder, _active = _active, None
    if recorder is not None:
        recorder._lock = threading.Lock()
        recorder._register_lock = threading.Lock()
        recorder._drain_lock = threading.Lock()
        recorder.step_callback = None
        recorder.remove()
        del recorder._buf[:]


os.register_at_fork(after_in_child=_disable_in_forked_child)
