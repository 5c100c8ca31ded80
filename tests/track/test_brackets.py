"""The bulk path for training steps gives exactly what the event loop gives."""

import itertools
import random
from array import array

import numpy as np
import pytest
import torch
from torch import nn

from greenprof.track import brackets, runs
from greenprof.track.events import (
    BWD_ENTER,
    BWD_EXIT,
    BWD_PASS_END,
    FWD_ENTER,
    FWD_EXIT,
    OPT_ENTER,
    OPT_EXIT,
    REGION_ENTER,
    REGION_EXIT,
    THREAD_SHIFT,
    EventBuffer,
)
from greenprof.track.hooks import HookRecorder
from greenprof.track.startup import StartupTimeline
from greenprof.track.timeline import Timeline
from tests.track.test_runs import assert_same, call_tree, stream, tables


@pytest.fixture
def bracket_runs(monkeypatch) -> list[bool]:
    """What each bulk call for training events answered (True: it consumed its run)."""
    answers: list[bool] = []
    real = brackets.bracket_run

    def spy(timeline, events, regions):
        answers.append(real(timeline, events, regions))
        return answers[-1]

    monkeypatch.setattr(runs, "bracket_run", spy)
    monkeypatch.setattr(runs, "MIN_RUN_EVENTS", 8)
    return answers


def backward_of(rng: random.Random, forward: list, clock: list[int]) -> list:
    """Backward events for a forward call tree, as the node hooks give them.

    Modules start in the reverse order of their forward exits, each ending where the next one
    (in backward order) starts; some end late or early (their input was made elsewhere, or
    needed no gradient), some never end (the pass end closes them), a few exits find nothing.
    """
    events = []
    exits = [key for _t, code, key in forward if code == FWD_EXIT][::-1]
    open_keys: list[int] = []
    for key in exits:
        clock[0] += rng.choice((0, 0, 3, 40))
        if open_keys and rng.random() < 0.8:
            events.append((clock[0], BWD_EXIT, open_keys.pop(rng.randrange(len(open_keys)))))
        events.append((clock[0], BWD_ENTER, key))
        open_keys.append(key)
        if rng.random() < 0.1:
            events.append((clock[0], BWD_EXIT, key))  # a container: ends with its output's node
            open_keys.pop()
    for key in open_keys:
        if rng.random() < 0.7:
            clock[0] += rng.choice((1, 5))
            events.append((clock[0], BWD_EXIT, key))
    if rng.random() < 0.2:
        events.append((clock[0], BWD_EXIT, 12345))  # a module whose backward never started
    clock[0] += 2
    events.append((clock[0], BWD_PASS_END, -1))  # as the recorder writes it
    return events


def training(seed: int, *, regions: bool = False) -> list:
    """Training steps: forward call trees, their backward passes, optimizer steps."""
    rng = random.Random(seed)
    events: list = []
    clock = [1_000]
    for _ in range(rng.randint(10, 40)):
        tree: list = []
        call_tree(random.Random(seed * 10 + rng.randrange(2)), tree, clock, 0, 0)
        if regions and rng.random() < 0.3:
            tree = [(tree[0][0], REGION_ENTER, 2), *tree, (clock[0], REGION_EXIT, 2)]
        events += tree
        events += backward_of(rng, tree, clock)
        if rng.random() < 0.8:
            clock[0] += 4
            events += [(clock[0], OPT_ENTER, 99), (clock[0] + 9, OPT_EXIT, 99)]
            clock[0] += 10
    return events


def steps_tables(events: list, chunks: int, bin_ns: int = 50):
    """As :func:`tables`, with the events drained at step ends, as a profile drains them."""
    ends = [i + 1 for i, (_t, code, _k) in enumerate(events) if code in (OPT_EXIT, BWD_PASS_END)]
    cuts = [0, *ends[len(ends) // chunks :: max(1, len(ends) // chunks)][: chunks - 1], len(events)]
    t0 = events[0][0]
    by_loop, by_buffer = (Timeline(t0, bin_ns, trace_steps=0) for _ in range(2))
    for start, stop in itertools.pairwise(cuts):
        part = events[start:stop]
        by_loop.feed(list(part))
        by_buffer.feed(EventBuffer(array("q", [v for event in part for v in event])))
    end = events[-1][0] + 10
    return by_loop.finish(end), by_buffer.finish(end)


@pytest.mark.parametrize("seed", range(16))
def test_training_steps_in_bulk_match_the_loop(seed, bracket_runs) -> None:
    loop, bulk = steps_tables(training(seed, regions=seed % 2 == 1), chunks=2 + seed % 3)
    assert_same(loop, bulk)
    assert True in bracket_runs
    assert loop.steps > 0 and loop.self_ns.sum() > 0


@pytest.mark.parametrize("seed", range(8))
def test_mixed_streams_in_bulk_match_the_loop(seed, bracket_runs) -> None:
    loop, bulk = tables(stream(seed), chunks=3)
    assert_same(loop, bulk)
    broken, broken_bulk = tables(stream(200 + seed, broken=True), make=StartupTimeline)
    assert_same(broken, broken_bulk)


def test_an_exception_that_left_calls_open_is_left_to_the_loop(bracket_runs) -> None:
    events = [(1, FWD_ENTER, 0), (2, FWD_ENTER, 1), (3, FWD_EXIT, 0), (4, BWD_ENTER, 0)]
    events += [(5, BWD_EXIT, 0), (6, BWD_PASS_END, -1)] + [
        (7 + i, OPT_ENTER + i % 2, 9) for i in range(4)
    ]
    loop, bulk = tables(events, chunks=1)
    assert_same(loop, bulk)
    assert bracket_runs == [False] and loop.inconsistencies == bulk.inconsistencies > 0


def test_innermost_is_the_last_enter_not_yet_closed() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 64, 300):
        entered = np.sort(rng.choice(n, size=rng.integers(1, n + 1), replace=False))
        close = np.array([rng.integers(e + 1, n + 2) for e in entered])
        close = np.minimum(close, n)
        top = brackets._innermost(entered, close, n)
        for j in range(n):
            open_ = [e for e, c in zip(entered, close, strict=True) if e <= j < c]
            assert top[j] == (max(open_) if open_ else -1)


def test_a_real_training_loop_goes_through_the_bulk_path(bracket_runs) -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 8), nn.Tanh()))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with HookRecorder() as rec:
        for _ in range(30):
            model(torch.randn(2, 4)).sum().backward()
            optimizer.step()
            optimizer.zero_grad()
        events = rec.events
    loop, bulk = steps_tables(events, chunks=3, bin_ns=1_000_000)
    assert_same(loop, bulk)
    assert bracket_runs[1:] and all(bracket_runs[1:])  # the first one makes the columns
    assert loop.steps == 30


def _fed(events: list, make, *, warm: list, trace_steps: int = 0):
    """A loop-fed and a buffer-fed timeline, after ``warm`` (through the loop) then ``events``."""
    loop, bulk = make(0, 10, trace_steps=trace_steps), make(0, 10, trace_steps=trace_steps)
    for timeline in (loop, bulk):
        timeline.feed(list(warm))
    loop.feed(list(events))
    bulk.feed(EventBuffer(array("q", [v for event in events for v in event])))
    return loop, bulk


def test_a_long_run_of_region_events_without_a_call_goes_through_the_loop() -> None:
    regions = [(t, REGION_ENTER + t % 2, 5) for t in range(10, 300)]
    step = [(1, FWD_ENTER, 0), (2, FWD_EXIT, 0), (3, BWD_ENTER, 0), (4, BWD_EXIT, 0)]
    later = [(t + 1000, c, k) for t, c, k in [*step, (5, BWD_PASS_END, -1), *regions]]
    loop, bulk = _fed(later, Timeline, warm=regions[:2])
    assert_same(loop.finish(2000), bulk.finish(2000))


def test_where_a_step_starts_to_mean_an_optimizer_step_spans_are_kept_as_by_the_loop() -> None:
    def step(t):
        return [(t, FWD_ENTER, 0), (t + 1, FWD_EXIT, 0), (t + 2, BWD_ENTER, 0)] + [
            (t + 3, BWD_EXIT, 0),
            (t + 4, BWD_PASS_END, -1),
        ]

    # The optimizer's column exists (as after a replay), but no optimizer step counted yet.
    warm = [(1, OPT_ENTER, -1), (2, OPT_EXIT, -1)] + [
        e for i in range(5) for e in step(10 + 10 * i)
    ]
    later = [e for i in range(30) for e in step(100 + 10 * i)]
    later[5:5] = [(105, OPT_ENTER, -1), (105, OPT_EXIT, -1)]  # the first optimizer step
    loop, bulk = Timeline(0, 10, trace_steps=3), Timeline(0, 10, trace_steps=3)
    for timeline in (loop, bulk):
        timeline.feed(list(warm))
        timeline.step_count.optimizer_steps = 0
        timeline._tracing = timeline._trace_open()
        assert not timeline._tracing  # five backward passes: past the three steps kept
    loop.feed(list(later))
    bulk.feed(EventBuffer(array("q", [v for event in later for v in event])))
    assert loop.trace == bulk.trace and len(loop.trace) > 3
    assert_same(loop.finish(1000), bulk.finish(1000))


def test_an_optimizer_key_of_minus_one_stays_apart_from_the_modules(bracket_runs) -> None:
    step = [(1, FWD_ENTER, 3), (2, FWD_EXIT, 3), (3, BWD_ENTER, 3), (4, OPT_ENTER, -1)]
    step += [(5, BWD_EXIT, 3), (6, OPT_EXIT, -1), (7, BWD_PASS_END, -1)]
    events = [(t + 10 * i, c, k) for i in range(20) for t, c, k in step]
    loop, bulk = _fed(events[7:], Timeline, warm=events[:7])
    assert_same(loop.finish(500), bulk.finish(500))
    assert bracket_runs == [True]


def test_training_steps_after_another_threads_call_are_fed_in_bulk(bracket_runs) -> None:
    other = FWD_ENTER + (1 << THREAD_SHIFT)
    events = [(100, other, 7), (200, other + 1, 7)] + [(t + 1_000, c, k) for t, c, k in training(3)]
    loop, bulk = steps_tables(events, chunks=3)
    assert_same(loop, bulk)
    assert True in bracket_runs
