"""The timeline of a profiled program: time before its first model call is a row of its own.

Imports and data preparation before the first model call are no part of the loop; kept apart as
``(startup)``, they leave the outside-modules row to the glue between model calls.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from greenprof.schema import STARTUP_KEY
from greenprof.track.timeline import OTHER, Timeline


class StartupTimeline(Timeline):
    """A :class:`Timeline` whose time before the first event goes to column ``STARTUP_KEY``.

    Example:
        >>> from greenprof.track.events import FWD_ENTER, FWD_EXIT
        >>> timeline = StartupTimeline(0, 10)
        >>> timeline.feed([(25, FWD_ENTER, 0), (40, FWD_EXIT, 0)])
        >>> timeline.finish(40).columns[1]
        (-2, 3)
    """

    _started = False

    def feed(self, events: Iterable[tuple[int, int, int]]) -> None:
        """Consume events (a list, or the iterator drain() returns); the first ends the startup."""
        if not self._started:
            events = iter(events)
            first = next(events, None)
            if first is not None:
                self._started = True
                self._advance(first[0], self._column(STARTUP_KEY, OTHER))
                events = itertools.chain((first,), events)
        super().feed(events)
