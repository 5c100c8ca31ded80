"""The codes of tracking events: what the hooks write, what the timeline reads.

Torch-free, so that anything reading events (the timeline, tests, tools) need not import torch.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from enum import IntEnum


class Event(IntEnum):
    """What happened at an event's timestamp."""

    FWD_ENTER = 0
    FWD_EXIT = 1
    BWD_ENTER = 2
    BWD_EXIT = 3
    OPT_ENTER = 4
    OPT_EXIT = 5
    BWD_PASS_END = 6
    REGION_ENTER = 7  # key: a region id (greenprof.track.regions)
    REGION_EXIT = 8


# Plain ints for the hot path: an IntEnum member costs an attribute lookup and a type check.
FWD_ENTER = int(Event.FWD_ENTER)
FWD_EXIT = int(Event.FWD_EXIT)
BWD_ENTER = int(Event.BWD_ENTER)
BWD_EXIT = int(Event.BWD_EXIT)
OPT_ENTER = int(Event.OPT_ENTER)
OPT_EXIT = int(Event.OPT_EXIT)
BWD_PASS_END = int(Event.BWD_PASS_END)
REGION_ENTER = int(Event.REGION_ENTER)
REGION_EXIT = int(Event.REGION_EXIT)

#: Phases of a timeline column, and the phase of each event.
FORWARD, BACKWARD, OPTIMIZER, OTHER = 0, 1, 2, 3
PHASE_OF = {
    FWD_ENTER: FORWARD,
    FWD_EXIT: FORWARD,
    BWD_ENTER: BACKWARD,
    BWD_EXIT: BACKWARD,
    BWD_PASS_END: BACKWARD,
    OPT_ENTER: OPTIMIZER,
    OPT_EXIT: OPTIMIZER,
}

#: A forward event of a thread other than the one that installed the hooks has code
#: ``code + (n << THREAD_SHIFT)``, ``n`` the thread's number (1, 2, ...); ``code & CODE_MASK`` is
#: the event. Every other event has its plain code.
THREAD_SHIFT = 4
CODE_MASK = (1 << THREAD_SHIFT) - 1

#: Region id of time outside every region (its name is "").
NO_REGION = 0
#: Region id of the automatic ``eval`` region: outermost forwards run without gradients.
AUTO_EVAL = 1


def triples(flat: Iterable[int]) -> Iterator[tuple[int, int, int]]:
    """``(t_ns, code, key)`` triples of a flat event buffer, without building a list of tuples.

    ``zip`` reuses its result tuple when the consumer unpacks it, so a loop over the triples
    allocates nothing per event.
    """
    it = iter(flat)
    return zip(it, it, it, strict=True)


class EventBuffer:
    """Drained events: a flat buffer of ``(t_ns, code, key)`` slots, iterated as triples.

    A consumer that can read the events in bulk takes :attr:`flat`; any other iterates.

    Attributes:
        flat: the events, three slots each.
    """

    __slots__ = ("flat",)

    def __init__(self, flat: array) -> None:
        self.flat = flat

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        return triples(self.flat)

    def __len__(self) -> int:
        return len(self.flat) // 3
