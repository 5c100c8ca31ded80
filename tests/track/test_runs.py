"""The bulk path for runs of forward events gives exactly what the event loop gives."""

import dataclasses
import random
from array import array

import numpy as np
import pytest

from greenprof.track import runs
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
from greenprof.track.startup import StartupTimeline
from greenprof.track.timeline import Timeline


def call_tree(rng: random.Random, events: list, clock: list[int], key: int, depth: int) -> int:
    """Append one module call with random children; returns the next unused key."""
    clock[0] += rng.choice((0, 1, 7, 300))
    events.append((clock[0], FWD_ENTER, key))
    child = key + 1
    for _ in range(rng.randint(0, 3) if depth < 4 else 0):
        child = call_tree(rng, events, clock, child, depth + 1)
    clock[0] += rng.choice((0, 2, 50))
    events.append((clock[0], FWD_EXIT, key))
    return child


def stream(seed: int, *, broken: bool = False, threads: bool = False) -> list:
    """Root calls of a model, with regions, backward passes and optimizer steps between some."""
    rng = random.Random(seed)
    events: list = []
    clock = [1_000]
    for _ in range(rng.randint(20, 60)):
        tree: list = []
        shape = rng.randrange(3)
        # Three models, each called again and again: the same calls, so the same keys.
        call_tree(random.Random(seed * 10 + shape), tree, clock, 100 * shape, 0)
        if broken and rng.random() < 0.2 and len(tree) > 4:
            del tree[rng.randrange(1, len(tree) - 1)]  # an exit or enter an exception lost
        if rng.random() < 0.4:  # in a region (1: the automatic eval one), closed or not
            rid = rng.choice((1, 1, 2, 3))
            closed = rng.choice((rid, rid, rid, 2))
            tree = [(tree[0][0], REGION_ENTER, rid), *tree, (clock[0], REGION_EXIT, closed)]
        events += tree
        extra = rng.random()
        clock[0] += 3
        if extra < 0.15:  # a region inside a region, holding no call
            events += [(clock[0], REGION_ENTER, 1), (clock[0] + 1, REGION_EXIT, 1)]
        elif extra < 0.3:
            events += [(clock[0], BWD_ENTER, 0), (clock[0] + 5, BWD_EXIT, 0)]
            events += [(clock[0] + 6, BWD_PASS_END, 0), (clock[0] + 7, OPT_ENTER, 99)]
            events += [(clock[0] + 9, OPT_EXIT, 99)]
            clock[0] += 10
        elif threads and extra < 0.35:
            code = FWD_ENTER + (1 << THREAD_SHIFT)
            events += [(clock[0], code, 7), (clock[0] + 4, code + 1, 7)]
            clock[0] += 5
    return events


def tables(events: list, make=Timeline, chunks: int = 3):
    """The table of the loop (triples) and of drained buffers (bulk), fed in ``chunks`` parts."""
    by_loop = make(0, 50, trace_steps=0)
    by_buffer = make(0, 50, trace_steps=0)
    cut = len(events) // chunks
    parts = [events[i * cut : (i + 1) * cut if i < chunks - 1 else None] for i in range(chunks)]
    for part in parts:
        by_loop.feed(list(part))
        by_buffer.feed(EventBuffer(array("q", [v for event in part for v in event])))
    end = events[-1][0] + 10
    return by_loop.finish(end), by_buffer.finish(end)


def assert_same(a, b) -> None:
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=field.name)
        else:
            assert x == y, field.name


@pytest.fixture
def bulk_runs(monkeypatch) -> list[bool]:
    """What each bulk call answered (True: it consumed its run)."""
    answers: list[bool] = []
    real = runs.forward_run

    def spy(timeline, events):
        answers.append(real(timeline, events))
        return answers[-1]

    monkeypatch.setattr(runs, "forward_run", spy)
    monkeypatch.setattr(runs, "MIN_RUN_EVENTS", 8)
    return answers


@pytest.mark.parametrize("seed", range(12))
def test_bulk_runs_match_the_loop(seed, bulk_runs) -> None:
    loop, bulk = tables(stream(seed))
    assert_same(loop, bulk)
    assert True in bulk_runs  # the bulk path did the work, not only the loop
    assert loop.steps > 0 and loop.self_ns.sum() > 0


@pytest.mark.parametrize("seed", range(6))
def test_broken_nesting_and_other_threads_fall_back_to_the_loop(seed, bulk_runs) -> None:
    loop, bulk = tables(stream(100 + seed, broken=True, threads=True), make=StartupTimeline)
    assert_same(loop, bulk)
    assert loop.inconsistencies > 0


def test_a_run_that_closes_calls_opened_before_it_is_left_to_the_loop(bulk_runs) -> None:
    events = []
    call_tree(random.Random(5), events, [0], 0, 0)
    events = [  # call trees inside calls of module 90
        event
        for start in (0, 100_000, 200_000)
        for event in (
            (start + 1, FWD_ENTER, 90),
            *[(start + 10 + t, code, key) for t, code, key in events],
            (start + 90_000, FWD_EXIT, 90),
        )
    ]
    loop, bulk = tables(events, chunks=4)
    assert_same(loop, bulk)
    assert False in bulk_runs
