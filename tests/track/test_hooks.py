import gc

import pytest
import torch
from torch import nn

from greenprof.errors import ProfilerError
from greenprof.track import events
from greenprof.track.hooks import HookRecorder, active_recorder


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.lin(x))


class TupleOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x):
        y = self.lin(x)
        return y, {"extra": y * 2}


def names_of(rec: HookRecorder, code: int) -> list[str]:
    return [rec.keys[k].name for _t, c, k in rec.events if c == code]


def test_forward_events_nest_and_name_modules_by_qualified_name():
    model = nn.Sequential(nn.Linear(8, 8), Block())
    with HookRecorder() as rec:
        model(torch.randn(2, 8))
    assert names_of(rec, events.FWD_ENTER) == ["", "0", "1", "1.lin", "1.act"]
    assert names_of(rec, events.FWD_EXIT) == ["0", "1.lin", "1.act", "1", ""]
    times = [t for t, _c, _k in rec.events]
    assert times == sorted(times)


def test_backward_events_come_innermost_last_and_all_modules_end():
    model = nn.Sequential(nn.Linear(8, 8), Block())
    with HookRecorder() as rec:
        model(torch.randn(2, 8)).sum().backward()
    enters = names_of(rec, events.BWD_ENTER)
    # The root and block start before their last child does, so the child sits on top.
    assert enters.index("") < enters.index("1") < enters.index("1.act")
    assert set(enters) == {"", "0", "1", "1.lin", "1.act"}
    assert [c for _t, c, _k in rec.events].count(events.BWD_PASS_END) == 1


def test_no_grad_and_inference_mode_record_forward_only():
    model = nn.Sequential(nn.Linear(8, 8), nn.GELU())
    with HookRecorder() as rec:
        with torch.no_grad():
            model(torch.randn(2, 8))
        with torch.inference_mode():
            model(torch.randn(2, 8))
    codes = {c for _t, c, _k in rec.events}
    # Each outermost grad-free forward is wrapped in the automatic eval region, nothing else.
    assert codes == {events.FWD_ENTER, events.FWD_EXIT, events.REGION_ENTER, events.REGION_EXIT}
    regions = [(c, k) for _t, c, k in rec.events if c >= events.REGION_ENTER]
    assert (
        regions
        == [(events.REGION_ENTER, events.AUTO_EVAL), (events.REGION_EXIT, events.AUTO_EVAL)] * 2
    )
    assert len(rec.events) == 12 + 4


def test_tuple_and_dict_outputs_get_backward_events():
    model = TupleOut()
    with HookRecorder() as rec:
        y, extra = model(torch.randn(2, 8, requires_grad=True))
        (y.sum() + extra["extra"].sum()).backward()
    assert {"", "lin"} <= set(names_of(rec, events.BWD_ENTER))
    assert {"", "lin"} <= set(names_of(rec, events.BWD_EXIT))


def test_transformers_model_output_is_handled():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    model = transformers.BertForSequenceClassification(config)
    ids = torch.randint(0, 50, (2, 8))
    with HookRecorder() as rec:
        out = model(input_ids=ids, labels=torch.tensor([0, 1]))
        out.loss.backward()
    enters = set(names_of(rec, events.BWD_ENTER))
    assert "bert.encoder.layer.0.attention.self.query" in enters
    assert "classifier" in enters
    assert rec.inconsistencies == 0


def test_shared_module_called_twice_is_one_key_two_calls():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    with HookRecorder() as rec:
        model(torch.randn(1, 4))
    assert names_of(rec, events.FWD_ENTER) == ["", "0", "1", "0"]


def test_models_created_inside_the_block_and_several_roots():
    with HookRecorder() as rec:
        a = nn.Sequential(nn.Linear(4, 4))
        b = nn.Sequential(nn.Linear(4, 2), nn.Dropout())
        b(a(torch.randn(1, 4)))
    roots = {info.root for info in rec.keys}
    assert len(roots) == 2
    assert [info.name for info in rec.keys] == ["", "0", "", "0", "1"]


def test_submodule_called_alone_first_is_renamed_when_its_parent_runs():
    model = Block()
    with HookRecorder() as rec:
        model.lin(torch.randn(1, 8))
        model(torch.randn(1, 8))
    assert {info.name for info in rec.keys} == {"", "lin", "act"}
    assert len({info.root for info in rec.keys}) == 1


def test_optimizer_steps_are_recorded():
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with HookRecorder() as rec:
        model(torch.randn(3, 4)).sum().backward()
        opt.step()
    assert names_of(rec, events.OPT_ENTER) == ["optimizer:SGD"]
    assert names_of(rec, events.OPT_EXIT) == ["optimizer:SGD"]


def test_hooks_are_removed_even_when_the_body_raises():
    model = nn.Linear(2, 2)
    with pytest.raises(ZeroDivisionError):
        with HookRecorder():
            model(torch.randn(1, 2))
            raise ZeroDivisionError
    assert active_recorder() is None


def test_forward_that_raises_reaches_the_user_unchanged():
    class Broken(nn.Module):
        def forward(self, x):
            raise ValueError("boom")

    model = nn.Sequential(nn.Linear(2, 2), Broken())
    with HookRecorder() as rec:
        with pytest.raises(ValueError, match="boom"):
            model(torch.randn(1, 2))
        model[0](torch.randn(1, 2))
    # always_call: the exits of the failing modules are still recorded, so depth is back to 0.
    assert names_of(rec, events.FWD_EXIT)[:3] == ["0", "1", ""]


def test_nested_recorders_are_refused():
    with HookRecorder():
        with pytest.raises(ProfilerError, match="already profiling"):
            HookRecorder().install()


def test_a_failing_hook_is_counted_never_raised():
    calls = {"n": 0}

    def flaky_clock():
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("clock broke")
        return calls["n"]

    model = nn.Sequential(nn.Linear(2, 2))
    with HookRecorder(clock=flaky_clock) as rec:
        model(torch.randn(1, 2))
    assert rec.inconsistencies == 1


def test_the_recorder_does_not_keep_models_alive():
    import gc
    import weakref

    with HookRecorder() as rec:
        model = nn.Sequential(nn.Linear(2, 2))
        model(torch.randn(1, 2))
        ref = weakref.ref(model)
        del model
        gc.collect()
        assert ref() is None
    assert rec.keys[0].name == ""


def test_a_model_rebuilt_every_step_reuses_its_keys():
    import gc

    with HookRecorder() as rec:
        for _ in range(5):
            loss = nn.CrossEntropyLoss()
            loss(torch.randn(2, 3), torch.tensor([0, 1]))
            del loss
            gc.collect()
    assert len(rec.keys) == 1
    assert names_of(rec, events.FWD_ENTER) == [""] * 5


def test_two_live_models_of_one_class_keep_separate_keys():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    with HookRecorder() as rec:
        b(a(torch.randn(1, 2)))
    assert len(rec.keys) == 2


def test_a_module_built_inside_every_forward_keeps_one_key():
    class WithLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x):
            return nn.CrossEntropyLoss()(self.lin(x), torch.tensor([0]))

    model = WithLoss()
    with HookRecorder() as rec:
        for _ in range(4):
            model(torch.randn(1, 3))
    assert [info.name for info in rec.keys] == ["", "lin", "CrossEntropyLoss"]


def test_no_hook_is_left_on_a_leaf_input_between_steps():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    x = torch.randn(2, 3, requires_grad=True)
    with HookRecorder() as rec:
        for _ in range(3):
            model(x).sum().backward()
    assert not x._backward_hooks
    assert set(names_of(rec, events.BWD_EXIT)) == {"", "0", "1"}


def test_backward_ends_at_the_first_input_that_needs_a_gradient_not_the_first_argument():
    class Masked(nn.Module):
        def forward(self, mask, x):
            return x * mask

    lin, masked = nn.Linear(4, 4), Masked()
    with HookRecorder() as rec:
        masked(torch.ones(2, 4), lin(torch.randn(2, 4))).sum().backward()
    times = {
        (rec.keys[k].type_name, c): t
        for t, c, k in rec.events
        if c in (events.BWD_ENTER, events.BWD_EXIT)
    }
    # One node hook serves both: Masked's backward ends where Linear's starts.
    assert times[("Masked", events.BWD_EXIT)] == times[("Linear", events.BWD_ENTER)]
    assert times[("Masked", events.BWD_ENTER)] < times[("Masked", events.BWD_EXIT)]


def _net_tracked_allocations(model: torch.nn.Module, x: torch.Tensor, calls: int) -> int:
    """Objects the garbage collector tracks that ``calls`` forwards leave alive."""
    gc.collect()
    gc.disable()
    try:
        before = gc.get_count()[0]
        for _ in range(calls):
            model(x)
        return gc.get_count()[0] - before
    finally:
        gc.enable()


def test_hot_path_leaves_no_tracked_objects_per_event():
    model = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(10)]).eval()
    x = torch.randn(1, 4)
    with torch.no_grad():
        unprofiled = _net_tracked_allocations(model, x, 50)
        with HookRecorder() as rec:
            model(x)  # names registered on first call
            profiled = _net_tracked_allocations(model, x, 50)
    assert rec.pending >= 11 * 2 * 51  # module events, and region events where regions apply
    # 1,100 events were recorded; a tuple per event would leave 1,100 objects for the collector.
    assert profiled - unprofiled < 50
