import threading

import pytest
import torch
from torch import nn

import greenprof
from greenprof.track import events
from greenprof.track.hooks import HookRecorder
from greenprof.track.timeline import FORWARD, Timeline


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))


def _run_in_threads(models: list[nn.Module], calls: int) -> None:
    """Each model on its own thread; the barrier makes their forwards overlap."""
    barrier = threading.Barrier(len(models))
    errors: list[BaseException] = []

    def work(model: nn.Module) -> None:
        try:
            x = torch.randn(4, 8)
            for _ in range(calls):
                barrier.wait()
                model(x)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_two_models_of_one_class_on_two_threads_get_their_own_rows():
    calls = 12
    with greenprof.profile(calibrate=False, sensors=[]) as prof:
        _run_in_threads([_model(), _model()], calls)
    layers = prof.session.layers()
    fwd = layers[layers["phase"] == "forward"].set_index("module")
    expected = {p + s for p in ("Sequential", "Sequential#2") for s in ("", ".0", ".1", ".2")}
    assert set(fwd.index) == expected
    assert (fwd["calls"] == calls).all()
    assert prof.session.meta["inconsistencies"] == 0
    assert not any("did not match" in w for w in prof.session.meta["warnings"])
    assert layers["time_s"].sum() == pytest.approx(prof.session.meta["duration_s"])


def test_thread_time_is_shared_and_adds_up_to_the_run():
    models = [_model() for _ in range(3)]
    with HookRecorder() as rec:
        _run_in_threads(models[:2], 5)
        models[2](torch.randn(4, 8))  # and one on the installing thread
    evs = rec.events
    # Events of the two workers carry thread numbers 1 and 2; the main thread's are plain.
    assert {c >> events.THREAD_SHIFT for _t, c, _k in evs} == {0, 1, 2}
    t0, t1 = evs[0][0], evs[-1][0]
    timeline = Timeline(t0, 1000)
    timeline.feed(rec.drain())
    table = timeline.finish(t1)
    assert table.inconsistencies == 0
    # No optimizer, no backward: a step is a call of the main model (track/steps.py), one of
    # the two models called 5 times each on a thread of its own.
    assert table.steps == 5
    assert table.self_ns.sum() == t1 - t0
    roots = [
        c
        for c, (k, phase) in enumerate(table.columns)
        if k >= 0 and phase == FORWARD and rec.keys[k].name == ""
    ]
    assert sorted(table.calls[roots]) == [1, 5, 5]


def test_overlapping_calls_share_time_evenly():
    timeline = Timeline(0, 10)
    tag = 1 << events.THREAD_SHIFT
    timeline.feed(
        [
            (0, events.FWD_ENTER, 0),  # main thread: module 0 from 0 to 100
            (40, events.FWD_ENTER + tag, 1),  # thread 1: module 1 from 40 to 80
            (80, events.FWD_EXIT + tag, 1),
            (100, events.FWD_EXIT, 0),
        ]
    )
    table = timeline.finish(100)
    self_ns = {key: table.self_ns[c] for c, (key, _phase) in enumerate(table.columns)}
    assert self_ns[0] == 40 + 20 + 20 and self_ns[1] == 20
    assert table.inconsistencies == 0
