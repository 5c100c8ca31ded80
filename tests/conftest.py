"""Checks every test gets for free: nothing greenprof starts may outlive the test."""

import threading

import pytest
from torch.nn.modules import module as nn_module
from torch.optim import optimizer as optim_module

from greenprof.track.calls import is_greenprof_call
from greenprof.track.hooks import HookRecorder, active_recorder


def _greenprof_hooks() -> list[str]:
    """Global module/optimizer hooks that belong to a greenprof HookRecorder."""
    tables = {
        "forward pre": nn_module._global_forward_pre_hooks,
        "forward": nn_module._global_forward_hooks,
        "optimizer pre": optim_module._global_optimizer_pre_hooks,
        "optimizer post": optim_module._global_optimizer_post_hooks,
    }
    found = [
        kind
        for kind, table in tables.items()
        for hook in table.values()
        if isinstance(getattr(hook, "__self__", None), HookRecorder)
    ]
    if is_greenprof_call(nn_module.Module._call_impl):
        found.append("nn.Module._call_impl")
    return found


@pytest.fixture(autouse=True)
def _no_leaks():
    yield
    # No join here: a thread still alive when the test returns is exactly the leak to catch.
    threads = [t.name for t in threading.enumerate() if t.name.startswith("greenprof-")]
    assert not threads, f"greenprof threads outlived the test: {threads}"
    hooks = _greenprof_hooks()
    assert not hooks and active_recorder() is None, f"greenprof hooks outlived the test: {hooks}"
