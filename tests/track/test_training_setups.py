"""Tracking in the PyTorch setups real training uses: checkpointing, keyword inputs, forked
DataLoader workers, graphs that outlive a profile, CUDA graph capture."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from greenprof.schema import OUTSIDE_COLUMN
from greenprof.track import events, hooks
from greenprof.track.calls import is_greenprof_call
from greenprof.track.hooks import HookRecorder
from greenprof.track.timeline import BACKWARD, FORWARD, Timeline


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(16, 16)
        self.act = nn.GELU()
        self.b = nn.Linear(16, 16)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.b(self.act(self.a(h)))


class Net(nn.Module):
    """Three blocks, run plainly, under checkpoint(), or called by keyword."""

    def __init__(self, mode: str = "plain") -> None:
        super().__init__()
        self.embed = nn.Linear(8, 16)
        self.blocks = nn.ModuleList(Block() for _ in range(3))
        self.head = nn.Linear(16, 1)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for block in self.blocks:
            if self.mode == "plain":
                h = block(h)
            elif self.mode == "keyword":
                h = block(h=h)
            else:
                h = checkpoint(block, h, use_reentrant=self.mode == "reentrant")
        return self.head(h)


def record(model: nn.Module, step, steps: int = 2) -> tuple[HookRecorder, list]:
    """Events of ``steps`` calls of ``step`` under a clock that ticks once per reading.

    Each hook reads the clock once, so "time" counts hook calls: two runs that differ only in
    what the hooks record compare exactly, whatever the machine's load.
    """
    ticks = itertools.count(1)
    with HookRecorder(clock=lambda: next(ticks)) as rec:
        for _ in range(steps):
            step(model)
    return rec, rec.events


def table_of(rec_events: list):
    timeline = Timeline(0, 1000)
    timeline.feed(rec_events)
    return timeline.finish(rec_events[-1][0])


def calls_by_phase(rec: HookRecorder, table, phase: int) -> dict[str, int]:
    return {
        rec.keys[key].name: int(n)
        for (key, ph), n in zip(table.columns, table.calls, strict=True)
        if key >= 0 and ph == phase
    }


def train_step(model: nn.Module) -> None:
    torch.manual_seed(1)
    model(torch.randn(4, 8)).pow(2).mean().backward()


# ------------------------------------------------------------------ activation checkpointing
@pytest.mark.parametrize("mode", ["non-reentrant", "reentrant"])
def test_checkpoint_recompute_is_backward_not_a_second_forward(mode: str) -> None:
    torch.manual_seed(0)
    plain_rec, plain_events = record(Net("plain"), train_step)
    torch.manual_seed(0)
    rec, ckpt_events = record(Net(mode), train_step)
    plain, ckpt = table_of(plain_events), table_of(ckpt_events)
    # Forward calls count real forwards only: the recompute inside backward adds none.
    assert calls_by_phase(rec, ckpt, FORWARD) == calls_by_phase(plain_rec, plain, FORWARD)
    codes = [code for _t, code, _k in ckpt_events]
    # One backward pass per step, ended by the engine, not by the recompute's first module.
    assert codes.count(events.BWD_PASS_END) == 2
    for start in (i for i, c in enumerate(codes) if c == events.BWD_ENTER):
        end = codes.index(events.BWD_PASS_END, start)
        assert events.FWD_ENTER not in codes[start:end]
        break
    # Every module still gets its backward; the recompute is timed as the blocks' backward.
    assert set(calls_by_phase(rec, ckpt, BACKWARD)) == set(
        calls_by_phase(plain_rec, plain, FORWARD)
    )
    assert ckpt.steps == plain.steps == 2
    assert rec.inconsistencies == 0 and ckpt.inconsistencies == 0
    if mode == "non-reentrant":
        # The recompute happens inside the blocks' backward: no more time outside modules.
        assert ckpt.self_ns[OUTSIDE_COLUMN] == plain.self_ns[OUTSIDE_COLUMN]


def _llama_run(checkpointing: bool):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    model = transformers.LlamaForCausalLM(config).train()
    if checkpointing:
        model.gradient_checkpointing_enable()
    ids = torch.randint(0, 64, (2, 8))
    rec, rec_events = record(
        model, lambda m: m(input_ids=ids, labels=ids, use_cache=False).loss.backward(), steps=1
    )
    return rec, rec_events, table_of(rec_events)


def test_transformers_gradient_checkpointing_keeps_calls_and_the_outside_row() -> None:
    plain_rec, plain_events, plain = _llama_run(False)
    rec, ckpt_events, ckpt = _llama_run(True)
    assert calls_by_phase(rec, ckpt, FORWARD) == calls_by_phase(plain_rec, plain, FORWARD)
    assert [c for _t, c, _k in ckpt_events].count(events.BWD_PASS_END) == 1
    assert ckpt.self_ns[OUTSIDE_COLUMN] == plain.self_ns[OUTSIDE_COLUMN]
    assert set(calls_by_phase(rec, ckpt, BACKWARD)) == set(
        calls_by_phase(plain_rec, plain, BACKWARD)
    )


# ------------------------------------------------------------------ keyword inputs
def test_block_called_by_keyword_ends_its_backward_at_its_input() -> None:
    torch.manual_seed(0)
    rec, rec_events = record(Net("keyword"), train_step, steps=1)
    times: dict[tuple[str, int], int] = {}
    for t_ns, code, key in rec_events:
        if code in (events.BWD_ENTER, events.BWD_EXIT) and key >= 0:
            times.setdefault((rec.keys[key].name, code), t_ns)
    for i in range(3):
        block, first = f"blocks.{i}", f"blocks.{i}.a"
        # The block's backward spans its layers' backward: it ends when its first layer's
        # does (at the node that made its keyword input), not right after its output's node.
        assert times[(block, events.BWD_EXIT)] >= times[(first, events.BWD_EXIT)]
        assert times[(block, events.BWD_ENTER)] <= times[(f"blocks.{i}.b", events.BWD_ENTER)]
    table = table_of(rec_events)
    plain_rec, plain_events = record(Net("plain"), train_step, steps=1)
    assert table.self_ns[OUTSIDE_COLUMN] == table_of(plain_events).self_ns[OUTSIDE_COLUMN]


# ------------------------------------------------------------------ forked DataLoader workers
class HookCensus(torch.utils.data.Dataset):
    """Each item calls a module and reports what greenprof left live in the worker."""

    def __init__(self) -> None:
        self.layer = nn.Linear(2, 2)

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> torch.Tensor:
        with torch.no_grad():
            self.layer(torch.ones(1, 2))
        wrapped = is_greenprof_call(nn.Module._call_impl)
        return torch.tensor([wrapped, hooks.active_recorder() is not None])


def test_fork_started_dataloader_workers_record_nothing() -> None:
    loader = torch.utils.data.DataLoader(
        HookCensus(), batch_size=1, num_workers=2, multiprocessing_context="fork"
    )
    with HookRecorder() as rec:
        seen = torch.cat(list(loader))
    assert seen.tolist() == [[0, 0]] * 4  # no live hooks, no active recorder in the workers
    assert all(rec.keys[k].type_name != "Linear" for _t, _c, k in rec.events if k >= 0)
    assert rec.inconsistencies == 0 and rec.live is False


# ------------------------------------------------------------------ graphs across profiles
def test_a_graph_from_one_profile_writes_nothing_into_the_next() -> None:
    model = Net("plain")
    with HookRecorder() as first:
        loss = model(torch.randn(4, 8)).pow(2).mean()
    kept = first.pending
    with HookRecorder() as second:
        loss.backward()  # the graph (and its node hooks) of the first profile
        codes = {code for _t, code, _k in second.events}
        fresh = model(torch.randn(4, 8)).pow(2).mean()
        fresh.backward()
    assert first.pending == kept  # the dead recorder got nothing
    assert events.BWD_ENTER not in codes  # nor did the live one, from the old graph
    assert first.inconsistencies == second.inconsistencies == 0
    names = {second.keys[k].name for _t, c, k in second.events if c == events.BWD_ENTER}
    assert {"", "head", "blocks.0.a"} <= names


def test_a_node_reused_by_the_next_profile_serves_it() -> None:
    embed, head = nn.Linear(4, 4), nn.Linear(4, 1)
    with HookRecorder():
        h = embed(torch.randn(2, 4))  # its node gets a hook of the first profile
    with HookRecorder() as second:
        head(h).sum().backward()
    exits = {second.keys[k].name for _t, c, k in second.events if c == events.BWD_EXIT}
    assert exits == {""}  # head's backward ends at the old node, in this profile's events


# ------------------------------------------------------------------ CUDA graph capture
class FakeCuda:
    def __init__(self) -> None:
        self.marks = 0

    def mark(self, device: int = 0) -> None:
        self.marks += 1


def test_nothing_is_recorded_while_a_cuda_graph_is_captured(monkeypatch) -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    fake = FakeCuda()
    with HookRecorder() as rec:
        rec.cuda = fake  # type: ignore[assignment]
        monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
        model(torch.randn(1, 2, requires_grad=True)).sum().backward()
        assert fake.marks == 0 and rec.pending == 0
        monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
        model(torch.randn(1, 2))
    assert fake.marks == rec.pending == 6
    assert rec.inconsistencies == 0


def test_the_node_kept_to_find_chains_is_released_when_the_forward_ends() -> None:
    model = Net("plain")
    with HookRecorder() as rec:
        out = model(torch.randn(4, 8))
        # Held past the forward, the last node would keep a graph alive that the user dropped.
        assert rec.last_node is None and out.grad_fn is not None
        out.pow(2).mean().backward()
    names = {rec.keys[k].name for _t, c, k in rec.events if c == events.BWD_EXIT}
    assert {"blocks.0.a", "blocks.1", "head", "embed"} <= names
