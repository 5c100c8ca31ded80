import math

import pandas as pd
import pytest

from greenprof.attribute.generation import GENERATION_COLUMNS, generation_rows


def layers():
    return pd.DataFrame(
        {
            "module": ["m", "m", "m", "m"],
            "region": ["prefill", "decode", "decode", ""],
            "time_s": [1.0, 2.0, 4.0, 1.0],
            "energy_j": [10.0, 20.0, 40.0, 5.0],
            "energy_lo_j": [8.0, 18.0, 30.0, 4.0],
            "energy_hi_j": [12.0, 22.0, 50.0, 6.0],
        }
    )


def call(prefill_s, decode_s, new):
    return {"prompt_tokens": 4, "new_tokens": new, "prefill_s": prefill_s, "decode_s": decode_s}


def test_regions_are_split_between_calls_by_their_time_and_add_up():
    rows = generation_rows(layers(), [call(0.25, 2.0, 10), call(0.75, 4.0, 0)], {})
    assert [set(r) for r in rows] == [set(GENERATION_COLUMNS)] * 2
    assert [r["prefill_j"] for r in rows] == pytest.approx([2.5, 7.5])
    assert [r["decode_j"] for r in rows] == pytest.approx([20.0, 40.0])
    assert [r["decode_lo_j"] for r in rows] == pytest.approx([16.0, 32.0])
    assert [r["decode_hi_j"] for r in rows] == pytest.approx([24.0, 48.0])
    assert rows[0]["j_per_new_token"] == pytest.approx(2.0)
    assert rows[0]["j_per_prompt_token"] == pytest.approx(2.5 / 4)
    assert math.isnan(rows[1]["j_per_new_token"])


def test_counted_tokens_in_a_region_shared_with_generate_get_only_the_rest_of_it():
    rows = generation_rows(layers(), [call(1.0, 3.0, 6)], {"decode": 9})
    generate, counted = rows
    assert generate["decode_j"] == pytest.approx(60.0 * 3 / 6)
    assert counted["new_tokens"] == 9 and counted["decode_j"] == pytest.approx(30.0)
    assert generate["decode_j"] + counted["decode_j"] == pytest.approx(60.0)
    assert counted["j_per_new_token"] == pytest.approx(30.0 / 9)


def test_nothing_generated_gives_no_rows():
    assert generation_rows(layers(), [], {}) == []
