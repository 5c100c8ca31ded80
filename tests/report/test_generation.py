import pytest

from greenprof.report.console import render_summary
from greenprof.report.generation import decode_layers, generation_headline, generation_lines
from greenprof.report.html import render_html
from greenprof.session import Session

ROW = {
    "call": 0,
    "source": "generate",
    "prompt_tokens": 8,
    "new_tokens": 20,
    "prefill_s": 0.5,
    "decode_s": 2.0,
    "prefill_j": 4.0,
    "prefill_lo_j": 3.0,
    "prefill_hi_j": 5.0,
    "decode_j": 10.0,
    "decode_lo_j": 8.0,
    "decode_hi_j": 12.0,
    "j_per_new_token": 0.5,
    "j_per_prompt_token": 0.5,
    "note": "beam search <3 beams>",
}


def test_summary_gives_joules_per_new_and_prompt_token_and_tokens_per_second(make_session):
    text = render_summary(make_session(generation=[ROW]))
    line = next(line for line in text.splitlines() if line.startswith("generation"))
    assert "20 new tokens in 1 call(s)" in line
    assert "decode 500 mJ ±100 mJ/new token" in line
    assert "prefill 500 mJ ±125 mJ/prompt token" in line
    assert "10 new tokens/s" in line


def test_estimated_generation_says_so_and_no_generation_adds_no_line(make_session):
    assert "generation (ESTIMATED)" in generation_headline(
        make_session(generation=[ROW], measured=False)
    )
    assert "generation" not in render_summary(make_session())


def test_html_report_has_a_generation_table_with_escaped_notes(make_session):
    page = render_html(make_session(generation=[ROW, {**ROW, "call": 1, "new_tokens": 0}]))
    assert "<h2>Generation</h2>" in page and "id=generation" in page
    assert "beam search &lt;3 beams&gt;" in page and "n/a" in page
    assert "id=generation" not in render_html(make_session())


def decode_session(make_session, **meta):
    """Two modules in region decode (fc dearer than act), one in prefill; 20 new tokens."""
    session = make_session(generation=[ROW], **meta)
    layers = session.layers()
    layers["region"] = ["prefill", "decode", "decode", "decode", "", ""]
    return Session(session.meta, layers, session.samples(), session.spans())


def test_costliest_layers_per_decoded_token_divide_decode_joules_and_bounds(make_session):
    layers = decode_layers(decode_session(make_session))
    # fc's forward (6 J) and backward (9 J) both ran in decode; act 0.1 J; root ran in prefill.
    assert list(layers["module"]) == ["fc", "act"]
    fc = layers.iloc[0]
    assert fc["j_per_token"] == pytest.approx(15.0 / 20)
    assert fc["lo_j_per_token"] == pytest.approx(13.5 / 20)
    assert fc["hi_j_per_token"] == pytest.approx(16.5 / 20)
    assert list(decode_layers(decode_session(make_session), n=1)["module"]) == ["fc"]


def test_summary_puts_prefill_against_decode_and_names_the_costliest_decode_layers(make_session):
    lines = render_summary(decode_session(make_session)).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("generation"))
    prefill, decode, layers = lines[start + 1 : start + 4]
    assert prefill.split()[:4] == ["prefill", "8", "prompt", "tokens"]
    assert "4 J ±1 J (28.6%)" in prefill and "16 tokens/s" in prefill
    assert "10 J ±2 J (71.4%)" in decode and "500 mJ ±100 mJ/token" in decode
    assert "10 tokens/s" in decode
    assert layers == "  costliest per decoded token: fc 750 mJ ±75 mJ, act 5 mJ ±10 mJ"


def test_tokens_counted_in_another_region_are_not_charged_to_decode_layers(make_session):
    row = {**ROW, "source": "tokens in region 'gen'"}
    session = decode_session(make_session)
    session.meta["generation"] = [row]
    assert decode_layers(session).empty
    assert not any("costliest" in line for line in generation_lines(session))


def test_html_report_shows_phases_rates_and_the_costliest_decode_layers(make_session):
    page = render_html(decode_session(make_session, measured=False))
    assert "id=generation-phases" in page and "id=generation-layers" in page
    assert "J/decoded token (estimated)" in page
    layers = page.split("id=generation-layers")[1].split("</table>")[0]
    assert layers.index("<td>fc</td>") < layers.index("<td>act</td>")
    assert "<td>750 mJ</td><td>±75 mJ</td>" in layers
    assert "over its 20 new tokens" in page
