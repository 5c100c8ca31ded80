"""What a step is: optimizer steps, else backward passes, else calls of the main model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from greenprof.track.hooks import HookRecorder
from greenprof.track.steps import StepCount
from greenprof.track.timeline import Timeline


def steps_of(run) -> int:
    with HookRecorder() as rec:
        run()
    rec_events = rec.events
    timeline = Timeline(rec_events[0][0], 10_000_000)
    timeline.feed(rec_events)
    return timeline.finish(rec_events[-1][0]).steps


def make() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4)
    )
    return model, nn.CrossEntropyLoss()


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(16, 8), torch.randint(0, 4, (16,))


def test_a_step_is_an_optimizer_step() -> None:
    model, criterion = make()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def run() -> None:
        for _ in range(3):
            x, y = batch()
            opt.zero_grad()
            criterion(model(x), y).backward()
            opt.step()
        with torch.no_grad():
            model(batch()[0])  # an evaluation call is no step

    assert steps_of(run) == 3


def test_manual_sgd_with_a_loss_module_steps_once_per_backward_pass() -> None:
    # As in pytorch/examples word_language_model: a loss module called as a root after the
    # model, parameters updated by hand, then an evaluation pass.
    model, criterion = make()

    def run() -> None:
        for _ in range(6):
            x, y = batch()
            model.zero_grad()
            criterion(model(x), y).backward()
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(p.grad, alpha=-0.1)
        with torch.no_grad():
            for _ in range(4):
                x, y = batch()
                criterion(model(x), y)

    assert steps_of(run) == 6


def test_without_backward_a_step_is_a_call_of_the_main_model_not_of_its_loss() -> None:
    model, criterion = make()

    def run() -> None:
        with torch.no_grad():
            for _ in range(5):
                x, y = batch()
                criterion(model(x), y)

    assert steps_of(run) == 5


def test_the_main_model_is_the_root_with_the_most_forward_time() -> None:
    count = StepCount()
    for _ in range(3):
        count.root_call(0, 1_000)  # the model
        count.root_call(1, 50)  # its loss module
        count.root_call(1, 50)  # ... called twice a step
    assert count.main_root == 0 and count.steps == 3
    count.backward_pass()
    assert count.steps == 1
    count.optimizer_step()
    count.optimizer_step()
    assert count.steps == 2
    assert StepCount().steps == 0 and StepCount().main_root is None


LANGUAGE_MODEL = """
import torch
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Embedding(50, 16), nn.LSTM(16, 16, batch_first=True))
head = nn.Linear(16, 50)
class LM(nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.head = model, head
    def forward(self, ids):
        out, _ = self.body(ids)
        return self.head(out)
lm, criterion = LM(), nn.CrossEntropyLoss()
for _ in range(40):
    ids = torch.randint(0, 50, (4, 6))
    lm.zero_grad()
    loss = criterion(lm(ids).view(-1, 50), ids.view(-1))
    loss.backward()
    with torch.no_grad():
        for p in lm.parameters():
            p.add_(p.grad, alpha=-0.1)
lm.eval()
with torch.no_grad():
    for _ in range(10):
        ids = torch.randint(0, 50, (4, 6))
        criterion(lm(ids).view(-1, 50), ids.view(-1))
"""


def test_run_of_a_manual_sgd_language_model_counts_its_training_iterations(tmp_path: Path) -> None:
    (tmp_path / "lm.py").write_text(LANGUAGE_MODEL)
    done = subprocess.run(
        [sys.executable, "-m", "greenprof", "run", "--sensor", "estimate", "--out", "run", "lm.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    meta = json.loads((tmp_path / "run" / "session.json").read_text())
    meta = meta.get("meta", meta)
    assert meta["steps"] == 40  # not 100: the loss module's calls and the eval pass are no steps
