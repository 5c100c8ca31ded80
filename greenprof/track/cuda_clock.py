"""Map CUDA events onto the host clock, without synchronising in the hooks (design rule 1).

On a GPU a hook runs when a kernel is *launched*; the kernel runs later. Hooks therefore record a
CUDA event next to each host timestamp. Once per step the recorder asks which events have
completed and converts their GPU times to the host clock through an anchor: an event recorded when
the stream was idle, whose host time is known. Events that have not completed yet wait for the next
step; only the end of the profile synchronises, once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from greenprof.clock import now_ns
from greenprof.cuda_state import cuda_in_use  # noqa: F401 - part of this module's API

logger = logging.getLogger(__name__)

#: Re-anchor at most this often: the GPU timer and the host clock drift by a few parts per million.
REANCHOR_NS = 1_000_000_000


class CudaClock:
    """Records CUDA events and resolves them to host nanoseconds.

    Args:
        event_factory: makes an event with timing enabled (``torch.cuda.Event`` by default).
        stream_idle: tells whether the current stream has no queued work.
        synchronize: waits for the device (called once when the clock starts and once at the end).
        clock: host clock.
    """

    def __init__(
        self,
        event_factory: Callable[[], Any] | None = None,
        stream_idle: Callable[[], bool] | None = None,
        synchronize: Callable[[], None] | None = None,
        clock: Callable[[], int] = now_ns,
    ) -> None:
        if event_factory is None or stream_idle is None or synchronize is None:
            import torch

            event_factory = event_factory or (lambda: torch.cuda.Event(enable_timing=True))
            stream_idle = stream_idle or (lambda: torch.cuda.current_stream().query())
            synchronize = synchronize or torch.cuda.synchronize
        self._new_event = event_factory
        self._stream_idle = stream_idle
        self._synchronize = synchronize
        self._clock = clock
        self._pool: list[Any] = []
        self._synchronize()
        self._anchor, self._anchor_ns = self._record_anchor()

    def _record_anchor(self) -> tuple[Any, int]:
        event = self._new_event()
        event.record()
        event.synchronize()
        return event, self._clock()

    def mark(self) -> Any:
        """Record an event on the current stream and return it (called from hooks: cheap)."""
        event = self._pool.pop() if self._pool else self._new_event()
        event.record()
        return event

    def resolve(self, events: list[Any]) -> list[int]:
        """Return host nanoseconds for the leading completed events, in order.

        Stops at the first event that has not completed; those are resolved by a later call.
        Resolved events go back to the pool for reuse.
        """
        if self._clock() - self._anchor_ns > REANCHOR_NS and self._stream_idle():
            # An idle stream runs the anchor at once: its host time is now.
            self._pool.append(self._anchor)
            self._anchor, self._anchor_ns = self._record_anchor()
        out = []
        for event in events:
            if not event.query():
                break
            elapsed_ms = self._anchor.elapsed_time(event)
            out.append(self._anchor_ns + int(elapsed_ms * 1e6))
            self._pool.append(event)
        return out

    def finish(self) -> None:
        """Wait for the device once, so that every recorded event can be resolved."""
        self._synchronize()
