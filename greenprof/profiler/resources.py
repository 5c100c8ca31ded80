"""What a profile acquires and releases around the user's code: sensors, devices, ranks."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from greenprof.cuda_state import cuda_in_use
from greenprof.sensors import Sensor

logger = logging.getLogger(__name__)


def several_ranks() -> bool:
    """True inside a process group of more than one rank."""
    import torch.distributed as dist

    return bool(dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1)


def wait_for_devices(devices: Iterable[int] = ()) -> None:
    """Let queued GPU work finish, once, so its joules land inside the profile.

    Args:
        devices: CUDA devices the profile timed, besides the current one (a model on ``cuda:1``).
    """
    if cuda_in_use():
        import torch

        for device in {torch.cuda.current_device(), *devices}:
            torch.cuda.synchronize(device)


def close_quietly(sensor: Sensor) -> None:
    """Close ``sensor``; a failure is logged, never raised (what it measured is kept)."""
    try:
        sensor.close()
    except Exception:
        logger.debug("greenprof: closing %s failed", sensor.name, exc_info=True)
