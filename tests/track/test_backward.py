import gc
import io
import itertools
import threading
import warnings

import torch
from torch import nn

from greenprof.track import backward, events
from greenprof.track.backward import HookPool
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
        _tracked_alive_after_forward(model, x)  # keys and hook dicts made on the first call
        profiled = _tracked_alive_after_forward(model, x)
    # Per call, the node's Python object (torch keeps it once it exists): the hook dicts and
    # hooks of the first step are used again, and the keys are ints.
    assert (profiled - unprofiled) / (layers + 1) <= 1.5


def _backward_events(rec: HookRecorder) -> list[tuple[int, str]]:
    timing = (events.BWD_ENTER, events.BWD_EXIT)
    return [(c, rec.keys[k].name) for _t, c, k in rec.events if c in timing]


def test_a_steady_loop_takes_its_hook_dicts_from_the_pool():
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(20)])
    x = torch.randn(2, 4)
    with HookRecorder() as rec:
        loss = model(x).sum()
        for _ in range(3):
            loss.backward()
            loss = model(x).sum()  # the last step's graph is alive while this one is made
        made = len(rec.hook_pool._dicts)
        for _ in range(10):
            loss.backward()
            loss = model(x).sum()
        assert len(rec.hook_pool._dicts) == made < 3 * 20  # two graphs, and a few more


def test_a_graph_kept_alive_keeps_its_hooks_while_later_steps_reuse_free_ones(monkeypatch):
    monkeypatch.setattr(HookPool, "LIMIT", 50)
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(20)])
    x = torch.randn(2, 4)
    with HookRecorder() as rec:
        model(x).sum().backward()
        one_pass = _backward_events(rec)
        rec.drain()
        kept = model(x).sum()  # its graph, and the hook dicts on it, stay alive
        for _ in range(20):
            model(x).sum().backward()
            assert _backward_events(rec) == one_pass
            rec.drain()
        kept.backward()
        assert _backward_events(rec) == one_pass  # its hooks still hold its own keys
        assert len(rec.hook_pool._dicts) <= 50


def test_a_pooled_hook_dict_forgets_the_hooks_a_user_put_on_its_last_tensor():
    lin, act = nn.Linear(4, 4), nn.ReLU()
    calls: list[int] = []
    with HookRecorder():
        for step in range(3):
            out = act(lin(torch.randn(2, 4)))
            if step == 0:
                out.register_hook(lambda grad, step=step: calls.append(step))
            out.sum().backward()
            del out  # its graph goes: the next step takes its hook dicts
    assert calls == [0]


def test_hook_dicts_in_use_by_other_threads_are_taken_once():
    # Two threads take hook dicts from one pool while a third keeps graphs alive: each dict
    # sits on one tensor at a time, so every module's backward is timed on every thread.
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(10)])
    errors: list[BaseException] = []

    def train() -> None:
        try:
            for _ in range(30):
                out = model(torch.randn(2, 4)).sum()
                out.backward()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    with HookRecorder() as rec:
        threads = [threading.Thread(target=train) for _ in range(2)]
        for thread in threads:
            thread.start()
        train()
        for thread in threads:
            thread.join()
        enters = sum(1 for c, _name in _backward_events(rec) if c == events.BWD_ENTER)
    assert not errors
    assert enters == 3 * 30 * 11


def test_without_a_gil_hook_dicts_are_made_anew_and_time_the_same(monkeypatch):
    monkeypatch.setattr(backward, "_POOLED", False)
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(5)])
    with HookRecorder() as rec:
        for _ in range(3):
            model(torch.randn(2, 4)).sum().backward()
        assert not rec.hook_pool._dicts
    enters = [c for c, _name in _backward_events(rec) if c == events.BWD_ENTER]
    assert len(enters) == 3 * 6
