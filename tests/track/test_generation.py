import pandas.testing as pd_testing
import pytest
import torch
from torch import nn
from transformers import GenerationMixin, GPT2Config, GPT2LMHeadModel

import greenprof
from greenprof.errors import ConfigError
from greenprof.sensors import ReplaySensor

EOS = 99  # outside the prompts below, so only generated tokens can end a sequence


def sensor():
    return ReplaySensor([0.0, 3600.0], [0.0, 50.0 * 3600.0], name="const")


def gpt2(eos=EOS):
    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=2,
        n_embd=64,
        n_head=2,
        vocab_size=100,
        n_positions=64,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=0,
    )
    return GPT2LMHeadModel(config).eval()


def prompts():
    torch.manual_seed(1)
    ids = torch.randint(1, 90, (2, 5))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # left padding: row 0 has a 3-token prompt
    return ids, mask


def profiled(fn):
    with greenprof.profile(sensors=[sensor()], calibrate=False) as prof:
        out = fn()
    return prof.session, out


def test_greedy_with_padding_counts_prompt_without_padding_and_splits_prefill_from_decode():
    model, (ids, mask) = gpt2(eos=None), prompts()
    model.generation_config.eos_token_id = None
    original = GenerationMixin.__dict__["generate"]
    session, out = profiled(
        lambda: model.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False)
    )
    gen = session.generation()
    assert len(gen) == 1 and gen.loc[0, "source"] == "generate"
    assert gen.loc[0, "prompt_tokens"] == 3 + 5
    assert gen.loc[0, "new_tokens"] == 2 * 4 == out[:, 5:].numel()
    by_region = session.layers().groupby("region")["energy_j"].sum()
    assert gen.loc[0, "prefill_j"] == pytest.approx(by_region["prefill"])
    assert gen.loc[0, "decode_j"] == pytest.approx(by_region["decode"])
    assert gen.loc[0, "decode_lo_j"] <= gen.loc[0, "decode_j"] <= gen.loc[0, "decode_hi_j"]
    assert gen.loc[0, "j_per_new_token"] == pytest.approx(gen.loc[0, "decode_j"] / 8)
    assert gen.loc[0, "j_per_prompt_token"] == pytest.approx(gen.loc[0, "prefill_j"] / 8)
    assert gen.loc[0, "prefill_s"] > 0 and gen.loc[0, "decode_s"] > 0
    assert GenerationMixin.__dict__["generate"] is original, "generate stayed wrapped"


def test_early_eos_ends_each_sequence_at_its_own_eos():
    ids, mask = prompts()
    free = gpt2(eos=None)
    free.generation_config.eos_token_id = None
    first = free.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
    eos = int(first[0, 5 + 1])  # row 0's second new token becomes its end
    expected_0 = first[0, 5:].tolist().index(eos) + 1
    row_1 = first[1, 5:].tolist()
    expected_1 = row_1.index(eos) + 1 if eos in row_1 else 6
    model = gpt2(eos=eos)
    session, out = profiled(
        lambda: model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
    )
    assert expected_0 <= 2
    assert session.generation().loc[0, "new_tokens"] == expected_0 + expected_1


def test_beam_search_counts_returned_sequences_and_says_so():
    model, (ids, mask) = gpt2(eos=None), prompts()
    model.generation_config.eos_token_id = None
    session, out = profiled(
        lambda: model.generate(
            ids, attention_mask=mask, max_new_tokens=3, num_beams=3, num_return_sequences=2
        )
    )
    gen = session.generation()
    assert out.shape[0] == 4
    assert gen.loc[0, "new_tokens"] == 4 * 3
    assert "beam search (3 beams)" in gen.loc[0, "note"]


def test_sampling_and_two_calls_split_the_regions_between_them():
    model, (ids, mask) = gpt2(eos=None), prompts()
    model.generation_config.eos_token_id = None

    def two():
        model.generate(ids, attention_mask=mask, max_new_tokens=2, do_sample=True)
        return model.generate(ids[:1], max_new_tokens=5, do_sample=True, top_k=5)

    session, _ = profiled(two)
    gen = session.generation()
    assert list(gen["new_tokens"]) == [4, 5] and list(gen["prompt_tokens"]) == [8, 5]
    by_region = session.layers().groupby("region")["energy_j"].sum()
    assert gen["decode_j"].sum() == pytest.approx(by_region["decode"])
    assert gen["prefill_j"].sum() == pytest.approx(by_region["prefill"])


def test_max_new_tokens_zero_leaves_a_row_that_says_why_and_the_profile_stands():
    model, (ids, mask) = gpt2(), prompts()

    def zero():
        with pytest.raises(ValueError, match="max_new_tokens"):  # transformers refuses it
            model.generate(ids, attention_mask=mask, max_new_tokens=0)
        return model.generate(ids, attention_mask=mask, max_new_tokens=1)

    session, _ = profiled(zero)
    gen = session.generation()
    assert list(gen["new_tokens"]) == [0, 2]
    assert "generate() raised" in gen.loc[0, "note"] and "max_new_tokens" in gen.loc[0, "note"]
    assert gen.loc[0, "j_per_new_token"] != gen.loc[0, "j_per_new_token"]  # NaN: nothing made


def test_a_model_without_generate_gives_an_empty_table_that_says_why():
    net = nn.Linear(4, 2)
    session, _ = profiled(lambda: net(torch.randn(3, 4)))
    gen = session.generation()
    assert len(gen) == 0 and "j_per_new_token" in gen.columns and "decode_lo_j" in gen.columns
    assert "no generate() call" in session.meta["generation_note"]


def test_tokens_in_a_plain_decoding_loop_give_a_row_per_region():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Embedding(50, 16), nn.Linear(16, 50))

    def loop():
        with torch.no_grad():
            with greenprof.region("prefill"):
                net(torch.randint(0, 50, (2, 7)))
                greenprof.tokens(14)
            with greenprof.region("decode"):
                for _ in range(5):
                    net(torch.randint(0, 50, (2, 1)))
                    greenprof.tokens(2)

    session, _ = profiled(loop)
    gen = session.generation().set_index("source")
    by_region = session.layers().groupby("region")["energy_j"].sum()
    decode = gen.loc["tokens in region 'decode'"]
    assert decode["new_tokens"] == 10 and decode["prompt_tokens"] == 0
    assert decode["decode_j"] == pytest.approx(by_region["decode"])
    assert decode["j_per_new_token"] == pytest.approx(by_region["decode"] / 10)
    prefill = gen.loc["tokens in region 'prefill'"]
    assert prefill["prompt_tokens"] == 14 and prefill["prefill_j"] == pytest.approx(
        by_region["prefill"]
    )


def test_tokens_outside_a_profile_does_nothing_and_refuses_bad_counts():
    greenprof.tokens(3)
    for bad in (-1, 2.5, True, "3"):
        with pytest.raises(ConfigError, match="tokens"):
            greenprof.tokens(bad)


def test_the_generation_table_survives_save_and_load(tmp_path):
    model, (ids, mask) = gpt2(), prompts()

    def run():
        with pytest.raises(ValueError):
            model.generate(ids, attention_mask=mask, max_new_tokens=0)
        return model.generate(ids, attention_mask=mask, max_new_tokens=2)

    session, _ = profiled(run)
    session.save(tmp_path / "run")
    loaded = greenprof.Session.load(tmp_path / "run").generation()
    pd_testing.assert_frame_equal(loaded, session.generation())


def test_a_streamer_sees_every_token_and_the_count_is_the_same():
    from transformers.generation.streamers import BaseStreamer

    class Collect(BaseStreamer):
        def __init__(self):
            self.seen, self.ended = [], False

        def put(self, value):
            self.seen.append(value.reshape(-1).tolist())

        def end(self):
            self.ended = True

    model, (ids, _) = gpt2(eos=None), prompts()
    model.generation_config.eos_token_id = None
    streamer = Collect()
    session, out = profiled(lambda: model.generate(ids[:1], max_new_tokens=4, streamer=streamer))
    gen = session.generation()
    assert gen.loc[0, "new_tokens"] == 4 and gen.loc[0, "prompt_tokens"] == 5
    assert streamer.ended and sum(streamer.seen[1:], []) == out[0, 5:].tolist()


def test_at_constant_power_each_call_gets_watts_times_its_prefill_and_decode_time():
    # A wide batch with short prompts, then one row with a long prompt, the same number of steps:
    # each part takes about as long in both calls while their token counts differ 3- to 4-fold,
    # so a split by tokens, or prefill swapped with decode, would miss watts times time.
    watts = 50.0
    model = gpt2(eos=None)
    model.generation_config.eos_token_id = None
    torch.manual_seed(2)
    wide, long = torch.randint(1, 90, (4, 3)), torch.randint(1, 90, (1, 40))

    def two():
        for ids in (wide, long):
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8)

    session, _ = profiled(two)
    gen = session.generation()
    assert list(gen["prompt_tokens"]) == [12, 40] and list(gen["new_tokens"]) == [32, 8]
    for _, row in gen.iterrows():
        assert row["prefill_j"] == pytest.approx(watts * row["prefill_s"], rel=0.05)
        assert row["decode_j"] == pytest.approx(watts * row["decode_s"], rel=0.05)
        ratio_s = row["prefill_s"] / row["decode_s"]
        assert row["prefill_j"] / row["decode_j"] == pytest.approx(ratio_s, rel=0.05)
        assert row["prefill_lo_j"] <= row["prefill_j"] <= row["prefill_hi_j"]
    layers = session.layers()
    outside_j = layers.loc[~layers["region"].isin(["prefill", "decode"]), "energy_j"].sum()
    generated_j = gen["prefill_j"].sum() + gen["decode_j"].sum()
    assert generated_j == pytest.approx(session.total_energy_j - outside_j, rel=0.005)
    assert generated_j == pytest.approx(
        watts * (gen["prefill_s"].sum() + gen["decode_s"].sum()), rel=0.05
    )


def test_decode_steps_call_the_model_without_a_hook_of_ours():
    model, (ids, mask) = gpt2(eos=None), prompts()
    model.generation_config.eos_token_id = None
    hooks_seen = []
    model.transformer.register_forward_pre_hook(
        lambda *_: hooks_seen.append(len(model._forward_hooks))
    )
    session, _ = profiled(
        lambda: model.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False)
    )
    # The first forward needs the hook that ends prefill; the three decode steps do not.
    assert hooks_seen == [1, 0, 0, 0]
    assert session.generation().loc[0, "new_tokens"] == 2 * 4
    assert not model._forward_hooks
