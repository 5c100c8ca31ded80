"""Whether this process uses CUDA: the one probe every stage asks."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def cuda_in_use() -> bool:
    """True when this process has initialised CUDA (so GPU work may be queued).

    Never initialises CUDA itself, and a broken CUDA install reads as "not in use": profiling on
    the CPU must not fail because of it.
    """
    try:
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_initialized())
    except Exception:
        logger.debug("greenprof: CUDA probe failed", exc_info=True)
        return False


def stream_capturing() -> bool:
    """True while the current CUDA stream is capturing a CUDA graph (False without CUDA)."""
    import torch

    try:
        return torch.cuda.is_current_stream_capturing()
    except RuntimeError:  # a torch built without CUDA (a test's fake device)
        return False
