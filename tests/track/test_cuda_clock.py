"""CUDA events mapped to the host clock, with a fake device (no GPU needed)."""

import pytest
import torch

from greenprof.track import hooks
from greenprof.track.cuda_clock import REANCHOR_NS, CudaClock
from greenprof.track.hooks import HookRecorder


class FakeDevice:
    """A stream whose kernels finish when the test says so; times in host nanoseconds."""

    def __init__(self):
        self.host_ns = 1_000_000
        self.gpu_done_ns = 0  # everything recorded at or before this GPU time has completed
        self.queue_end_ns = 0  # GPU time at which the queued work ends
        self.syncs = 0

    def clock(self):
        return self.host_ns

    def launch(self, work_ns):
        self.queue_end_ns = max(self.queue_end_ns, self.host_ns) + work_ns

    def synchronize(self):
        self.syncs += 1
        self.gpu_done_ns = max(self.queue_end_ns, self.host_ns)
        self.host_ns = max(self.host_ns, self.gpu_done_ns)

    def idle(self):
        return self.gpu_done_ns >= self.queue_end_ns

    def event(self):
        device = self

        class Event:
            def record(self):
                self.gpu_ns = max(device.queue_end_ns, device.host_ns)

            def synchronize(self):
                device.gpu_done_ns = max(device.gpu_done_ns, self.gpu_ns)
                device.host_ns = max(device.host_ns, self.gpu_ns)

            def query(self):
                return self.gpu_ns <= device.gpu_done_ns

            def elapsed_time(self, other):
                return (other.gpu_ns - self.gpu_ns) / 1e6

        return Event()


def make_clock(device):
    return CudaClock(device.event, device.idle, device.synchronize, clock=device.clock)


def test_events_resolve_to_when_the_gpu_ran_them_not_when_they_were_launched():
    device = FakeDevice()
    clock = make_clock(device)
    assert device.syncs == 1
    device.launch(5_000_000)  # 5 ms kernel queued
    marks = [clock.mark()]  # recorded after the kernel: completes when it does
    device.host_ns += 100  # the host runs ahead
    assert clock.resolve(marks) == []  # not done yet: no synchronisation, nothing resolved
    device.gpu_done_ns = device.queue_end_ns
    (t_ns,) = clock.resolve(marks)
    assert t_ns == 1_000_000 + 5_000_000


def test_resolution_stops_at_the_first_unfinished_event():
    device = FakeDevice()
    clock = make_clock(device)
    marks = []
    for _ in range(3):
        device.launch(1_000)
        marks.append(clock.mark())
    device.gpu_done_ns = marks[1].gpu_ns
    assert len(clock.resolve(marks)) == 2
    clock.finish()
    assert len(clock.resolve(marks[2:])) == 1


def test_the_anchor_is_renewed_when_the_stream_is_idle():
    device = FakeDevice()
    clock = make_clock(device)
    device.host_ns += 2 * REANCHOR_NS
    event = clock.mark()
    device.gpu_done_ns = event.gpu_ns
    (t_ns,) = clock.resolve([event])
    assert t_ns == device.host_ns


def test_recorder_hands_out_gpu_times_once_per_step_and_the_rest_at_the_end():
    device = FakeDevice()
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    with HookRecorder(clock=device.clock) as rec:
        rec.enable_cuda(make_clock(device))
        device.launch(3_000_000)
        model(torch.randn(1, 2))
        early = list(rec.drain())  # nothing has run on the fake GPU yet
        assert early == []
        events = list(rec.drain(final=True))
    F0, F1 = hooks.FWD_ENTER, hooks.FWD_EXIT
    assert [code for _t, code, _k in events] == [F0, F0, F1, F0, F1, F1]
    times = [t for t, _c, _k in events]
    assert times == sorted(times)
    assert times[0] >= 1_000_000 + 3_000_000  # after the queued kernel, on the GPU's time line


def test_no_cuda_means_host_times_unchanged():
    rec = HookRecorder()
    assert rec.cuda is None
    with rec:
        torch.nn.Linear(2, 2)(torch.randn(1, 2))
    events = list(rec.drain(final=True))
    assert len(events) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_real_cuda_events_resolve():
    clock = CudaClock()
    x = torch.randn(1024, 1024, device="cuda")
    marks = [clock.mark()]
    x @ x
    marks.append(clock.mark())
    clock.finish()
    first, second = clock.resolve(marks)
    assert second >= first
