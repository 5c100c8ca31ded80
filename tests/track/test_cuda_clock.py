"""CUDA events mapped to the host clock, with fake devices and streams (no GPU needed)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from greenprof.track import cuda_clock, hooks
from greenprof.track.cuda_clock import (
    CHAIN_NS,
    LAZY_ANCHOR_WAIT_NS,
    REANCHOR_NS,
    CudaClock,
    DeviceClocks,
    module_device,
)
from greenprof.track.hooks import HookRecorder


class FakeHost:
    """The host clock, shared by every fake device."""

    def __init__(self):
        self.ns = 1_000_000

    def __call__(self):
        return self.ns


class FakeStream:
    """A stream whose kernels finish when the test says so; times in host nanoseconds."""

    def __init__(self, host):
        self.host = host
        self.done_ns = 0  # everything recorded at or before this GPU time has completed
        self.queue_end_ns = 0  # GPU time at which the queued work ends

    def launch(self, work_ns):
        self.queue_end_ns = max(self.queue_end_ns, self.host.ns) + work_ns

    def run_all(self):
        self.done_ns = max(self.done_ns, self.queue_end_ns, self.host.ns)

    def query(self):
        return self.done_ns >= self.queue_end_ns


class FakeDevice:
    """One GPU: its streams, how often the host waited for it, and the events made on it."""

    def __init__(self, host, index=0):
        self.host = host
        self.index = index
        self.streams = [FakeStream(host)]
        self.current = self.streams[0]
        self.syncs = 0  # device-wide waits
        self.event_waits = 0  # waits for one event
        self.recorded = 0

    @property
    def stream(self):
        return self.streams[0]

    def synchronize(self):
        self.syncs += 1
        for stream in self.streams:
            stream.run_all()
        self.host.ns = max([self.host.ns] + [s.done_ns for s in self.streams])

    def event(self):
        device = self

        class Event:
            def record(self, stream):
                device.recorded += 1
                self.stream = stream
                self.gpu_ns = max(stream.queue_end_ns, device.host.ns)

            def synchronize(self):
                device.event_waits += 1
                self.stream.done_ns = max(self.stream.done_ns, self.gpu_ns)
                device.host.ns = max(device.host.ns, self.gpu_ns)

            def query(self):
                return self.gpu_ns <= self.stream.done_ns

            def elapsed_time(self, other):
                # CUDA reports milliseconds as a 32-bit float.
                return float(np.float32((other.gpu_ns - self.gpu_ns) / 1e6))

        return Event()

    def clock(self, anchor_now=True):
        return CudaClock(
            self.event, lambda: self.current, self.synchronize, self.host, anchor_now=anchor_now
        )


def test_events_resolve_to_when_the_gpu_ran_them_not_when_they_were_launched():
    host = FakeHost()
    device = FakeDevice(host)
    clock = device.clock()
    assert device.syncs == 1
    device.stream.launch(5_000_000)  # 5 ms kernel queued
    event = clock.mark()  # recorded after the kernel: completes when it does
    host.ns += 100  # the host runs ahead
    assert clock.resolve(event) is None  # not done yet: no synchronisation, nothing resolved
    device.stream.run_all()
    assert clock.resolve(event) == 1_000_000 + 5_000_000
    assert device.syncs == 1


def test_the_anchor_is_renewed_from_the_host_clock_when_the_stream_is_idle():
    host = FakeHost()
    device = FakeDevice(host)
    clock = device.clock()
    host.ns += 2 * REANCHOR_NS
    clock.renew()
    assert device.event_waits == 2  # the first anchor, and the renewed one on an idle stream
    event = clock.mark()
    device.stream.run_all()
    assert clock.resolve(event) == host.ns


def test_the_anchor_is_chained_so_float32_elapsed_times_stay_exact_over_hours():
    host = FakeHost()
    device = FakeDevice(host)
    clock = device.clock()
    start_ns = host.ns
    steps_ns = np.random.default_rng(0).integers(500_000_000, 1_500_000_000, 3 * 3600)
    worst_ns = unchained_worst_ns = 0
    for step_ns in steps_ns:  # about three hours of steps on a stream that is never idle
        device.stream.launch(int(step_ns))
        host.ns += int(step_ns)
        event = clock.mark()
        device.stream.done_ns = event.gpu_ns  # this step's kernels are done, the next queued
        device.stream.launch(1)
        t_ns = clock.resolve(event)
        worst_ns = max(worst_ns, abs(t_ns - event.gpu_ns))
        distance_ms = (event.gpu_ns - start_ns) / 1e6  # timed from the first anchor instead
        unchained_worst_ns = max(
            unchained_worst_ns, abs(float(np.float32(distance_ms)) - distance_ms) * 1e6
        )
    assert device.event_waits == 1  # never renewed from the host: the stream was never idle
    assert unchained_worst_ns > 200_000  # a fifth of a millisecond, and growing with the run
    assert worst_ns < 10_000


def test_short_gaps_keep_the_anchor_and_pool_the_events():
    host = FakeHost()
    device = FakeDevice(host)
    clock = device.clock()
    for _ in range(50):
        host.ns += CHAIN_NS // 100
        event = clock.mark()
        device.stream.run_all()
        assert clock.resolve(event) == event.gpu_ns
    assert device.recorded == 1 + 50 and len(clock._pool) == 1  # one event, reused


def test_a_clock_made_mid_profile_never_waits_while_the_stream_is_busy():
    host = FakeHost()
    device = FakeDevice(host)
    device.stream.launch(10_000_000)
    clock = device.clock(anchor_now=False)
    event = clock.mark()
    assert (device.syncs, device.event_waits) == (0, 0)  # made inside a hook: nothing waited
    assert clock.resolve(event) is None and device.event_waits == 0
    device.stream.run_all()  # idle at the next step boundary: the anchor runs at once
    assert clock.resolve(event) == 1_000_000 + 10_000_000
    assert device.syncs == 0


def test_a_stream_that_never_idles_gets_one_waited_anchor_after_a_while():
    host = FakeHost()
    device = FakeDevice(host)
    device.stream.launch(10 * LAZY_ANCHOR_WAIT_NS)
    clock = device.clock(anchor_now=False)
    event = clock.mark()
    host.ns += LAZY_ANCHOR_WAIT_NS + 1
    t_ns = clock.resolve(event)  # waited once for the anchor, which ran after the event
    assert device.event_waits == 1 and device.syncs == 0
    assert t_ns == event.gpu_ns


def fake_gpus(host, count):
    devices = [FakeDevice(host, i) for i in range(count)]
    made = []

    def make(index, anchor_now):
        made.append((index, anchor_now))
        return devices[index].clock(anchor_now)

    return devices, made, make


def test_each_device_is_timed_by_its_own_clock_in_recording_order():
    host = FakeHost()
    (gpu0, gpu1), made, make = fake_gpus(host, 2)
    clocks = DeviceClocks(make, anchor_now=(0,))
    gpu1.stream.launch(7_000_000)
    clocks.mark(1)  # behind 7 ms of work on cuda:1
    clocks.mark(0)  # cuda:0 is idle
    assert made == [(0, True), (1, False)]
    assert gpu1.recorded == 1 and gpu0.recorded == 2  # cuda:0's anchor and its event
    assert clocks.resolve() == []  # cuda:1 has not run it yet: the cuda:0 event waits behind it
    gpu0.stream.run_all()
    gpu1.stream.run_all()
    assert clocks.resolve() == [1_000_000 + 7_000_000, 1_000_000]
    assert clocks.pending == 0


def test_events_go_to_the_current_stream_of_their_device():
    host = FakeHost()
    device = FakeDevice(host)
    side = FakeStream(host)
    device.streams.append(side)
    clock = device.clock()
    side.launch(3_000_000)
    device.current = side  # as under `with torch.cuda.stream(side):`
    on_side = clock.mark()
    device.current = device.stream
    on_main = clock.mark()
    assert on_side.stream is side and on_main.stream is device.stream
    side.run_all()
    device.stream.run_all()
    assert clock.resolve(on_main) == 1_000_000
    assert clock.resolve(on_side) == 1_000_000 + 3_000_000


def fake_tensor(index):
    return SimpleNamespace(is_cuda=index is not None, device=SimpleNamespace(index=index))


def fake_module(parameters=(), buffers=()):
    return SimpleNamespace(parameters=lambda: iter(parameters), buffers=lambda: iter(buffers))


def test_module_device_comes_from_parameters_then_buffers_then_arguments():
    assert module_device(fake_module([fake_tensor(1)]), ()) == 1
    assert module_device(fake_module([], [fake_tensor(2)]), ()) == 2
    assert module_device(fake_module(), (3, fake_tensor(1))) == 1
    assert module_device(fake_module([fake_tensor(None)]), (fake_tensor(1),)) is None  # CPU
    assert module_device(fake_module(), ()) is None


def test_recorder_times_a_model_on_its_own_device(monkeypatch):
    host = FakeHost()
    (gpu0, gpu1), made, make = fake_gpus(host, 2)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    on_gpu1 = {id(model), id(model[0])}
    # The model's parameters live on cuda:1; ReLU has none and follows its caller.
    monkeypatch.setattr(
        hooks, "module_device", lambda module, args: 1 if id(module) in on_gpu1 else None
    )
    with HookRecorder(clock=host) as rec:
        rec.enable_cuda(DeviceClocks(make, anchor_now=(0,)))
        gpu1.stream.launch(3_000_000)
        model(torch.randn(1, 2))
        device_events, host_events = rec.drain_clocks()
        assert list(device_events) == [] and list(host_events) == []  # nothing ran on cuda:1
        device_events, host_events = rec.drain_clocks(final=True)
        device_events, host_events = list(device_events), list(host_events)
    assert gpu1.recorded == 1 + 6 and gpu0.recorded == 1  # every event on cuda:1
    F0, F1 = hooks.FWD_ENTER, hooks.FWD_EXIT
    assert [code for _t, code, _k in device_events] == [F0, F0, F1, F0, F1, F1]
    assert all(t >= 1_000_000 + 3_000_000 for t, _c, _k in device_events)  # the GPU's time line
    assert [t for t, _c, _k in host_events] == [1_000_000] * 6  # the hooks' own times
    assert [e[1:] for e in host_events] == [e[1:] for e in device_events]


def test_recorder_that_turns_cuda_on_mid_run_waits_for_nothing(monkeypatch):
    host = FakeHost()
    (gpu0,), made, make = fake_gpus(host, 1)
    monkeypatch.setattr(cuda_clock, "_real_clock", make)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    rec = HookRecorder(clock=host)
    rec.enable_cuda(anchor_now=False)  # what a step boundary does when CUDA starts mid-run
    assert made == [] and gpu0.syncs == 0
    rec._emit(hooks.OPT_ENTER, 0)
    assert made == [(0, False)] and (gpu0.syncs, gpu0.event_waits) == (0, 0)


def test_no_cuda_means_host_times_unchanged():
    rec = HookRecorder()
    assert rec.cuda is None
    with rec:
        torch.nn.Linear(2, 2)(torch.randn(1, 2))
    events, host_events = rec.drain_clocks(final=True)
    assert len(list(events)) == 2 and host_events is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_real_cuda_events_resolve():
    clocks = DeviceClocks(anchor_now=(torch.cuda.current_device(),))
    x = torch.randn(1024, 1024, device="cuda")
    clocks.mark(x.device.index)
    x @ x
    clocks.mark(x.device.index)
    clocks.finish()
    first, second = clocks.resolve()
    assert second >= first
