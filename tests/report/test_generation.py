from greenprof.report.console import render_summary
from greenprof.report.generation import generation_headline
from greenprof.report.html import render_html

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
