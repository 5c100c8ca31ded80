"""The timeline of a profiled program: time before its first model call is a row of its own.

Imports and data preparation before the first model call are no part of the loop; kept apart as
``(startup)``, they leave the outside-modules row to the glue between model calls.
"""

from __future__ import annotations

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

    def feed(self, events: list[tuple[int, int, int]]) -> None:
        """Consume events; the first one ends the startup."""
        if events and not self._started:
            self._started = True
            self._advance(events[0][0], self._column(STARTUP_KEY, OTHER))
        super().feed(events)
