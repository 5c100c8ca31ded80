import gc
import io
import itertools
import warnings

import torch
from torch import nn

from greenprof.track import events
from greenprof.track.hooks import HookRecorder


def backward_times(rec: HookRecorder) -> dict[tuple[str, int], int]:
    """``(module name, BWD_ENTER or BWD_EXIT) -> t_ns`` of a recorder's events."""
    return {
        (rec.keys[k].name, c): t
        for t, c, k in rec.events
        if c in (events.BWD_ENTER, events.BWD_EXIT)
    }


class Doubled(nn.Module):
    """Registers a hook of its own on its output, as a user's module may."""

    def __init__(self, calls: list[str]):
        super().__init__()
        self.calls = calls

    def forward(self, x):
        y = x * 2
        y.register_hook(lambda grad: self.calls.append("user") or grad * 0)
        return y


def test_a_users_hook_on_a_module_output_runs_with_greenprofs_and_can_change_the_gradient():
    calls: list[str] = []
    lin = nn.Linear(4, 4)
    model = nn.Sequential(lin, Doubled(calls))
    with HookRecorder() as rec:
        model(torch.randn(2, 4)).sum().backward()
    assert calls == ["user"]
    assert torch.count_nonzero(lin.weight.grad) == 0  # the user's hook zeroed the gradient
    assert ("1", events.BWD_ENTER) in backward_times(rec)


def test_a_hook_the_user_adds_after_the_module_call_runs_and_can_be_removed():
    lin, act = nn.Linear(4, 4), nn.ReLU()
    calls: list[int] = []
    with HookRecorder() as rec:
        for step in range(2):
            out = act(lin(torch.randn(2, 4)))
            handle = out.register_hook(lambda grad, step=step: calls.append(step))
            if step == 1:
                handle.remove()
            out.sum().backward()
    assert calls == [0]
    enters = [c for _t, c, _k in rec.events if c == events.BWD_ENTER]
    assert len(enters) == 4  # both modules, both steps


class Residual(nn.Module):
    """Changes a submodule's output in place before the next submodule uses it."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Tanh()

    def forward(self, x):
        h = self.a(x)
        h += x  # h's node is now the addition's
        return self.b(h)


def test_an_output_changed_in_place_gets_a_hook_on_its_new_node():
    ticks = itertools.count(1)
    model = nn.Sequential(nn.Linear(4, 4), Residual())
    with HookRecorder(clock=lambda: next(ticks)) as rec:
        model(torch.randn(2, 4)).sum().backward()
    times = backward_times(rec)
    # Tanh's backward ends before the addition runs, Linear's starts after it: two hooks, two
    # clock reads. A hook found on the tensor but sitting on its old node would give one.
    assert times[("1.b", events.BWD_EXIT)] < times[("1.a", events.BWD_ENTER)]


class Wrapped(torch.Tensor):
    pass


class ToSubclass(nn.Module):
    def forward(self, x):
        return (x * 2).as_subclass(Wrapped)


def test_a_tensor_subclass_output_is_timed_through_its_node():
    model = nn.Sequential(nn.Linear(4, 4), ToSubclass())
    with HookRecorder() as rec:
        out = model(torch.randn(2, 4))
        out.sum().backward()
    assert type(out) is Wrapped and out._backward_hooks is None
    times = backward_times(rec)
    assert times[("1", events.BWD_ENTER)] <= times[("1", events.BWD_EXIT)]
    assert ("0", events.BWD_EXIT) in times


def test_a_module_output_saved_during_a_profile_warns_of_no_hook():
    lin = nn.Linear(4, 4)
    with HookRecorder():
        out = lin(torch.randn(2, 4))
        assert out._backward_hooks  # greenprof's hook sits on the output
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            torch.save(out, io.BytesIO())


def _tracked_alive_after_forward(model: nn.Module, x: torch.Tensor) -> int:
    """Objects the garbage collector tracks that one forward leaves alive until its backward."""
    gc.collect()
    gc.disable()
    try:
        before = gc.get_count()[0]
        out = model(x)
        alive = gc.get_count()[0] - before
        out.sum().backward()
        return alive
    finally:
        gc.enable()


def test_a_training_step_keeps_few_tracked_objects_alive_per_module_call():
    # The collector runs once 700 new tracked objects are alive: a BERT-size step makes a few
    # hundred module calls, each of which keeps its backward hook alive until backward ran.
    layers = 50
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(layers)])
    x = torch.randn(1, 4)
    unprofiled = _tracked_alive_after_forward(model, x)
    with HookRecorder():
        _tracked_alive_after_forward(model, x)  # keys made on the first call
        profiled = _tracked_alive_after_forward(model, x)
    # Per call: the hook, the tensor's hook dict, the node's and the output's Python objects
    # (torch keeps both once they exist); the keys themselves are ints.
    assert (profiled - unprofiled) / (layers + 1) <= 4.0
