"""Map CUDA events onto the host clock, without synchronising in the hooks (design rule 1).

On a GPU a hook runs when a kernel is *launched*; the kernel runs later. Hooks therefore record a
CUDA event next to each host timestamp, on the stream the module's work goes to: the current
stream of the module's own device (a model on ``cuda:1`` is timed on ``cuda:1`` whatever the
current device). Once per step the recorder asks which events have completed and converts their
GPU times to the host clock through an anchor per device: an event whose host time is known.

Anchors are taken where a device's stream is idle (an event recorded then runs at once, so its host
time is the time of recording) and then chained: each resolved event becomes the next anchor
once the last one is :data:`CHAIN_NS` old, because CUDA reports elapsed times as 32-bit floats
(about a microsecond of rounding per second of distance, a quarter of a millisecond after an hour).
An idle stream renews the anchor from the host clock at most every :data:`REANCHOR_NS`, which
undoes the drift between the GPU timer and the host clock.

When greenprof waits for a device:

* when the profile starts with CUDA in use, once, for the current device (its first anchor);
* a device first used later gets its anchor without waiting, the first time its stream is idle at
  a step boundary; if it stays busy for :data:`LAZY_ANCHOR_WAIT_NS`, the next step boundary waits
  once for that stream's queued work (only that stream, only once);
* when the profile ends, once per device used, so that every event resolves.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Callable
from typing import Any

from greenprof.clock import now_ns
from greenprof.cuda_state import cuda_in_use  # noqa: F401 - part of this module's API

logger = logging.getLogger(__name__)

#: Renew an anchor from the host clock at most this often (GPU timer and host clock drift by a
#: few parts per million).
REANCHOR_NS = 1_000_000_000
#: Chain the anchor onto the last resolved event once the anchor is this old (GPU time): keeps
#: the float32 elapsed times CUDA reports short, hence exact to about 10 ns.
CHAIN_NS = 100_000_000
#: How long a device first used mid-profile may stay busy before its anchor waits for its stream.
LAZY_ANCHOR_WAIT_NS = 1_000_000_000


class CudaClock:
    """Records CUDA events on one device and resolves them to host nanoseconds.

    Args:
        event_factory: makes an event with timing enabled (``torch.cuda.Event`` by default).
        current_stream: the device's current stream (``record`` target; ``query()`` tells idle).
        synchronize: waits for the device (only where the module docstring says).
        clock: host clock.
        device: the CUDA device index (used for the defaults).
        anchor_now: wait for the device now and take the first anchor (profile start); else the
            anchor comes lazily, without waiting, when the stream is next idle.

    Example:
        >>> clock = CudaClock(device=0, anchor_now=True)  # doctest: +SKIP
        >>> event = clock.mark()  # doctest: +SKIP
        >>> clock.finish(); clock.resolve(event)  # doctest: +SKIP
        123456789
    """

    def __init__(
        self,
        event_factory: Callable[[], Any] | None = None,
        current_stream: Callable[[], Any] | None = None,
        synchronize: Callable[[], None] | None = None,
        clock: Callable[[], int] = now_ns,
        *,
        device: int | None = None,
        anchor_now: bool = True,
    ) -> None:
        if event_factory is None or current_stream is None or synchronize is None:
            import torch

            event_factory = event_factory or (lambda: torch.cuda.Event(enable_timing=True))
            current_stream = current_stream or (lambda: torch.cuda.current_stream(device))
            synchronize = synchronize or (lambda: torch.cuda.synchronize(device))
        self._new_event = event_factory
        self._stream = current_stream
        self._synchronize = synchronize
        self._clock = clock
        self._pool: list[Any] = []
        self._anchor: Any = None
        self._anchor_ns = 0  # host time of the anchor
        self._renewed_ns = 0  # host time the anchor was last taken from the host clock
        self._created_ns = clock()
        if anchor_now:
            self._synchronize()
            self._take_anchor()

    def mark(self) -> Any:
        """Record an event on the device's current stream and return it (from hooks: cheap)."""
        event = self._pool.pop() if self._pool else self._new_event()
        event.record(self._stream())
        return event

    def resolve(self, event: Any) -> int | None:
        """Return the host nanoseconds at which ``event`` ran, or None while it has not run.

        A resolved event goes back to the pool for reuse (or becomes the next anchor).
        """
        if self._anchor is None and not self._lazy_anchor():
            return None
        if not event.query():
            return None
        elapsed_ns = round(self._anchor.elapsed_time(event) * 1e6)
        t_ns = self._anchor_ns + elapsed_ns
        if elapsed_ns > CHAIN_NS:
            # The event is the new anchor: later events are timed from it, at short distance.
            self._pool.append(self._anchor)
            self._anchor, self._anchor_ns = event, t_ns
        else:
            self._pool.append(event)
        return t_ns

    def renew(self) -> None:
        """Take a fresh anchor from the host clock when it is due and the stream is idle."""
        if self._anchor is None:
            return
        if self._clock() - self._renewed_ns > REANCHOR_NS and self._stream().query():
            self._pool.append(self._anchor)
            self._take_anchor()

    def finish(self) -> None:
        """Wait for the device once, so that every recorded event can be resolved."""
        self._synchronize()
        if self._anchor is None:
            self._take_anchor()

    def _lazy_anchor(self) -> bool:
        """Anchor a clock made mid-profile: now if the stream is idle; after a wait, by waiting."""
        if self._stream().query():
            self._take_anchor()  # an idle stream runs the event at once: no wait
            return True
        if self._clock() - self._created_ns > LAZY_ANCHOR_WAIT_NS:
            logger.debug("greenprof: the CUDA stream stayed busy; waiting once for an anchor")
            self._take_anchor()
            return True
        return False

    def _take_anchor(self) -> None:
        event = self._new_event()
        event.record(self._stream())
        event.synchronize()
        self._anchor, self._anchor_ns = event, self._clock()
        self._renewed_ns = self._anchor_ns


class DeviceClocks:
    """One :class:`CudaClock` per device, and the events recorded so far, in recording order.

    Args:
        make_clock: makes the clock of a device, given its index and whether to anchor it now.
        anchor_now: devices whose clocks are made (and anchored, waiting once) right away.
    """

    def __init__(
        self,
        make_clock: Callable[[int, bool], CudaClock] | None = None,
        anchor_now: tuple[int, ...] = (),
    ) -> None:
        self._make = make_clock or _real_clock
        self._clocks: dict[int, CudaClock] = {d: self._make(d, True) for d in anchor_now}
        self._events: list[Any] = []
        self._devices = array("q")  # machine ints: appending allocates nothing tracked

    def mark(self, device: int) -> None:
        """Record an event on the current stream of CUDA device ``device``."""
        clock = self._clocks.get(device)
        if clock is None:
            clock = self._clocks[device] = self._make(device, False)
        self._events.append(clock.mark())
        self._devices.append(device)

    @property
    def devices(self) -> list[int]:
        """The devices events were recorded on (or anchored) so far."""
        return list(self._clocks)

    @property
    def pending(self) -> int:
        """Events recorded and not resolved yet."""
        return len(self._events)

    def resolve(self) -> list[int]:
        """Host nanoseconds of the leading resolved events, in recording order.

        Stops at the first event that has not run; it and those after it wait for a later call.
        """
        for clock in self._clocks.values():
            clock.renew()
        out: list[int] = []
        clocks = self._clocks
        for event, device in zip(self._events, self._devices, strict=True):
            t_ns = clocks[device].resolve(event)
            if t_ns is None:
                break
            out.append(t_ns)
        del self._events[: len(out)]
        del self._devices[: len(out)]
        return out

    def finish(self) -> None:
        """Wait once for every device used, so that every event resolves."""
        for clock in self._clocks.values():
            clock.finish()


def _real_clock(device: int, anchor_now: bool) -> CudaClock:
    return CudaClock(device=device, anchor_now=anchor_now)


def module_device(module: Any, args: Any) -> int | None:
    """The CUDA device a module's work runs on, or None when it cannot tell.

    Its first parameter's or buffer's device, else its first positional tensor argument's; None
    for a module on the CPU or without either (called once per module, then cached).
    """
    for tensor in module.parameters():
        return _device_index(tensor)
    for tensor in module.buffers():
        return _device_index(tensor)
    for arg in args if isinstance(args, tuple) else (args,):
        if hasattr(arg, "is_cuda") and hasattr(arg, "device"):
            return _device_index(arg)
    return None


def _device_index(tensor: Any) -> int | None:
    return int(tensor.device.index) if tensor.is_cuda else None
