import torch
from torch import nn

from greenprof.track.capture import CallCapture


def test_keeps_the_first_call_of_each_root_with_keyword_inputs_until_disarmed():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(2, 2)

        def forward(self, x, *, scale=1.0):
            return self.proj(x) * scale

    net = Net().eval()
    capture = CallCapture(lambda m: m is net)
    capture.install()
    try:
        first = torch.ones(1, 2)
        with torch.no_grad():
            net(first, scale=3.0)
        net(torch.zeros(1, 2))
        capture.disarm()
        net(torch.zeros(5, 2))
    finally:
        capture.disarm()
    (call,) = capture.calls.values()
    assert call.module is net and call.args[0] is first
    assert call.kwargs == {"scale": 3.0}
    assert call.grad_enabled is False
    assert call.training == {"": False, "proj": False}
    capture.release()
    assert capture.calls == {}
