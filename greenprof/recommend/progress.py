"""The optimize loop's progress bar on stderr, or nothing."""

from __future__ import annotations

import sys
from typing import Any


def progress_bar(total: int, enabled: bool | None) -> Any:
    """A tqdm bar of ``total`` changes on stderr (off unless stderr is a terminal, by default).

    Without tqdm installed: an object that accepts the same calls and shows nothing.
    """
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    disable = (not sys.stderr.isatty()) if enabled is None else not enabled
    return tqdm(total=total, file=sys.stderr, disable=disable, unit="change", leave=False)


class _NoBar:
    def set_description(self, text: str) -> None:
        pass

    def update(self, count: int) -> None:
        pass

    def close(self) -> None:
        pass
