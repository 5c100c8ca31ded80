import torch
from torch import nn

from greenprof.track import replay
from greenprof.track.capture import CapturedCall
from greenprof.track.replay import Replayer, copy_tensors, tensors_in


def test_copies_leave_the_callers_tensors_alone():
    x = torch.ones(3, requires_grad=True)
    args = ({"a": x, "b": [x * 2]}, 5)
    copied = copy_tensors(args)
    assert copied[1] == 5
    assert copied[0]["a"] is not x and torch.equal(copied[0]["a"], x)
    assert copied[0]["a"].requires_grad
    copied[0]["a"].data.add_(1)
    assert torch.equal(x, torch.ones(3))
    assert len(list(tensors_in(args))) == 2


def test_inputs_over_the_gpu_memory_budget_are_not_copied(monkeypatch):
    monkeypatch.setattr(replay, "cuda_in_use", lambda: True)
    big = torch.zeros(1024)
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    monkeypatch.setattr(torch.Tensor, "device", property(lambda self: torch.device("cuda", 0)))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 10_000))
    why = replay._over_memory_budget(((big,), {}))
    assert "exceed 25% of the free memory" in why


def test_a_replay_runs_forward_and_backward_and_changes_no_gradient():
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    keys = {id(m): i for i, m in enumerate(model.modules())}
    calls = []
    model[0].register_forward_hook(lambda m, a, o: calls.append("fwd"))
    call = CapturedCall(model, (torch.randn(3, 4),), {}, True)
    plan = {keys[id(model[0])]: 0.01, keys[id(model[2])]: 0.01}
    report = Replayer(plan, lambda m: keys.get(id(m))).run([call])
    assert set(report.replayed_s) == set(plan)
    assert not report.skipped and not report.roots_failed
    assert len(calls) > 2  # the replays went through the module's own __call__
    assert all(p.grad is None for p in model.parameters())
