import numpy as np

from greenprof.schema import STARTUP_KEY
from greenprof.track import events as hooks
from greenprof.track.startup import StartupTimeline
from greenprof.track.timeline import BACKWARD, FORWARD, OPTIMIZER, OTHER, OUTSIDE_COLUMN, Timeline

F0, F1, B0, B1, O0, O1, END = (
    hooks.FWD_ENTER,
    hooks.FWD_EXIT,
    hooks.BWD_ENTER,
    hooks.BWD_EXIT,
    hooks.OPT_ENTER,
    hooks.OPT_EXIT,
    hooks.BWD_PASS_END,
)


def self_times(table):
    return {table.columns[c]: int(table.self_ns[c]) for c in range(len(table.columns))}


def test_self_time_goes_to_the_innermost_module_and_gaps_to_outside():
    tl = Timeline(0, 10)
    tl.feed([(5, F0, 0), (10, F0, 1), (30, F1, 1), (40, F1, 0)])
    table = tl.finish(50)
    times = self_times(table)
    assert times[(-1, OTHER)] == 5 + 10
    assert times[(0, FORWARD)] == 5 + 10
    assert times[(1, FORWARD)] == 20
    assert table.self_ns.sum() == 50
    assert table.steps == 1


def test_backward_entries_end_in_any_order_and_pass_end_closes_the_rest():
    tl = Timeline(0, 100)
    # Q, K, V share an input: their ends all arrive together, after all three began.
    tl.feed(
        [
            (0, B0, 9),
            (10, B0, 1),
            (20, B0, 2),
            (30, B0, 3),
            (40, B1, 1),
            (40, B1, 2),
            (40, B1, 3),
            (50, END, -1),
        ]
    )
    times = self_times(tl.finish(60))
    assert times[(1, BACKWARD)] == 10
    assert times[(2, BACKWARD)] == 10
    assert times[(3, BACKWARD)] == 10
    assert times[(9, BACKWARD)] == 10 + 10
    assert times[(-1, OTHER)] == 10


def test_exit_of_an_outer_module_closes_what_an_exception_left_open():
    tl = Timeline(0, 100)
    tl.feed([(0, F0, 0), (10, F0, 1), (20, F1, 0), (30, O0, 7), (40, O1, 7)])
    table = tl.finish(40)
    times = self_times(table)
    assert times[(1, FORWARD)] == 10
    assert times[(7, OPTIMIZER)] == 10
    assert table.inconsistencies == 1
    assert table.steps == 1


def test_cells_merge_on_a_grid_when_no_updates_are_known_and_totals_stay_exact():
    tl = Timeline(0, 10, max_cells=40)
    events = []
    for i in range(100):
        events += [(i * 20, F0, 0), (i * 20 + 15, F1, 0)]
    tl.feed(events)
    table = tl.finish(2000)
    assert len(table.bin_self_ns) <= 40
    per_column = np.bincount(table.bin_column, weights=table.bin_self_ns)
    np.testing.assert_allclose(per_column, table.self_ns)
    assert table.self_ns[OUTSIDE_COLUMN] == 500
    assert np.all(table.bin_end_ns > table.bin_start_ns)


def test_trace_keeps_only_the_first_steps():
    tl = Timeline(0, 10, trace_steps=3)
    tl.feed([(i * 10 + d, code, 0) for i in range(10) for d, code in ((0, F0), (5, F1))])
    table = tl.finish(100)
    assert len(table.trace) == 3
    assert table.trace[0] == (1, 0, 5, 0)
    assert table.calls[1] == 10


def test_cells_are_bounded_when_every_bin_holds_many_columns():
    tl = Timeline(0, 10, max_cells=200)
    events = []
    t = 0
    for _step in range(200):
        for key in range(20):
            events += [(t, F0, key), (t + 5, F1, key)]
            t += 5
    tl.feed(events)
    table = tl.finish(t)
    assert len(table.bin_column) <= 200
    per_column = np.bincount(table.bin_column, weights=table.bin_self_ns)
    np.testing.assert_allclose(per_column, table.self_ns)


def test_cells_merge_on_a_grid_when_too_few_updates_are_known():
    import numpy as np

    tl = Timeline(0, 10, max_cells=40, gaps=lambda: (np.array([5.0]), np.array([6.0])))
    events = []
    for i in range(300):
        events += [(i * 20, F0, 0), (i * 20 + 15, F1, 0)]
    for i in range(0, len(events), 50):
        tl.feed(events[i : i + 50])
    table = tl.finish(6000)
    assert len(table.bin_self_ns) <= 40
    per_column = np.bincount(table.bin_column, weights=table.bin_self_ns)
    np.testing.assert_allclose(per_column, table.self_ns)


def region_times(table):
    return {
        (*table.columns[c], table.region_of(c)): int(table.self_ns[c])
        for c in range(len(table.columns))
    }


def test_columns_inside_a_region_are_their_own_including_time_outside_modules():
    tl = Timeline(0, 10)
    R0, R1 = hooks.REGION_ENTER, hooks.REGION_EXIT
    tl.feed([(0, F0, 0), (10, F1, 0), (20, R0, 5), (30, F0, 0), (40, F1, 0), (45, R1, 5)])
    table = tl.finish(50)
    times = region_times(table)
    assert times[(0, FORWARD, 0)] == 10
    assert times[(0, FORWARD, 5)] == 10
    assert times[(-1, OTHER, 5)] == 10 + 5  # 20..30 and 40..45 inside the region
    assert times[(-1, OTHER, 0)] == 10 + 5
    assert table.self_ns.sum() == 50


def test_the_automatic_eval_region_keeps_an_open_user_region():
    tl = Timeline(0, 10)
    R0, R1 = hooks.REGION_ENTER, hooks.REGION_EXIT
    auto = hooks.AUTO_EVAL
    tl.feed([(0, R0, 7), (0, R0, auto), (0, F0, 0), (10, F1, 0), (10, R1, auto), (10, R1, 7)])
    tl.feed([(20, R0, auto), (20, F0, 0), (30, F1, 0), (30, R1, auto)])
    times = region_times(tl.finish(30))
    assert times[(0, FORWARD, 7)] == 10
    assert times[(0, FORWARD, auto)] == 10


def test_a_region_left_open_by_an_exception_closes_with_the_outer_one():
    tl = Timeline(0, 10)
    R0, R1 = hooks.REGION_ENTER, hooks.REGION_EXIT
    tl.feed([(0, R0, 5), (0, R0, 6), (10, R1, 5), (10, F0, 0), (20, F1, 0), (20, R1, 9)])
    table = tl.finish(20)
    assert region_times(table)[(0, FORWARD, 0)] == 10
    assert table.inconsistencies == 1  # the exit of a region never entered


def test_a_run_without_regions_has_no_region_list():
    tl = Timeline(0, 10)
    tl.feed([(0, F0, 0), (10, F1, 0)])
    assert tl.finish(10).column_region == []


def test_time_before_the_first_model_call_is_startup_and_gaps_after_it_are_outside():
    tl = StartupTimeline(0, 10)
    tl.feed([])  # nothing ran yet: no startup column either
    tl.feed([(25, F0, 0), (40, F1, 0)])
    tl.feed([(60, F0, 0), (70, F1, 0)])
    times = self_times(tl.finish(80))
    assert times[(STARTUP_KEY, OTHER)] == 25
    assert times[(-1, OTHER)] == 20 + 10
    assert times[(0, FORWARD)] == 15 + 10
    assert sum(times.values()) == 80
    # A plain timeline (replays) has no startup: the gap before the first call is outside.
    plain = Timeline(0, 10)
    plain.feed([(25, F0, 0), (40, F1, 0)])
    assert (STARTUP_KEY, OTHER) not in self_times(plain.finish(40))


def test_event_codes_of_calls_carry_their_phase_and_direction_in_their_bits():
    # The feed loop reads phase = code >> 1 and exit = code & 1 for every call event.
    for code, phase, is_exit in (
        (F0, FORWARD, 0),
        (F1, FORWARD, 1),
        (B0, BACKWARD, 0),
        (B1, BACKWARD, 1),
        (O0, OPTIMIZER, 0),
        (O1, OPTIMIZER, 1),
    ):
        assert (code >> 1, code & 1) == (phase, is_exit)
    assert END > O1 and hooks.REGION_ENTER > END and hooks.REGION_EXIT > END


def test_feeding_keeps_no_tracked_object_per_event():
    import gc
    from array import array

    tl = Timeline(0, 10, trace_steps=0)
    flat = array("q")
    for i in range(5000):  # 15 000 events, fewer segments than a flush takes
        flat.extend((i * 30, F0, 0))
        flat.extend((i * 30 + 5, B0, 1))
        flat.extend((i * 30 + 10, B1, 1))
        flat.extend((i * 30 + 20, F1, 0))
    tl.feed([(0, F0, 0), (1, F1, 0)])  # the columns exist before counting
    collections = []
    gc.collect()  # the allocation count starts from zero
    gc.callbacks.append(lambda phase, info: collections.append(phase))
    try:
        tl.feed(hooks.triples(flat[12:]))
    finally:
        gc.callbacks.pop()
    # A tracked object kept per event (a tuple, a list) would set off a collection every 700.
    assert collections == []
    table = tl.finish(5000 * 30)
    assert table.calls[1] == 5000
    assert table.self_ns.sum() == 5000 * 30


def test_an_exit_that_is_not_innermost_closes_backward_entries_in_any_order():
    tl = Timeline(0, 10, trace_steps=5)
    # Module 3's backward starts inside module 2's; 2 ends first, then 3 (overlapping ends).
    tl.feed([(0, B0, 2), (10, B0, 3), (20, B1, 2), (30, B1, 3), (40, F0, 4), (50, F1, 4)])
    table = tl.finish(50)
    times = self_times(table)
    assert times[(2, BACKWARD)] == 10
    assert times[(3, BACKWARD)] == 20
    assert times[(4, FORWARD)] == 10
    assert sorted(span[1:3] for span in table.trace) == [(0, 20), (10, 30), (40, 50)]
