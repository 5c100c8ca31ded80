"""The stack of open regions, as the timeline keeps it while it reads region events."""

from __future__ import annotations

from greenprof.track.events import AUTO_EVAL, NO_REGION, REGION_ENTER


def region_event(regions: list[tuple[int, int]], code: int, region: int) -> bool:
    """Open or close ``region`` on ``regions``, the open ones: ``(id as entered, id in effect)``.

    The automatic ``eval`` region never hides a user's region. Returns False (nothing changed)
    for the exit of a region that is not open.
    """
    if code == REGION_ENTER:
        current = regions[-1][1] if regions else NO_REGION
        in_effect = current if region == AUTO_EVAL and current else region
        regions.append((region, in_effect))
        return True
    for i in range(len(regions) - 1, -1, -1):
        if regions[i][0] == region:
            # Regions an exception left open inside this one close with it.
            del regions[i:]
            return True
    return False
