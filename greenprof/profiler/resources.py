"""What a profile acquires and releases around the user's code: sensors, devices, ranks."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from greenprof.cuda_state import cuda_in_use
from greenprof.errors import ConfigError
from greenprof.sensors import Sensor, detect
from greenprof.sensors.ranks import current_cuda_device, local_rank, owned_sensors

logger = logging.getLogger(__name__)


def resolve_sensors(
    spec: Sequence[Sensor | str] | None, rated_cpu_power_w: float | None
) -> list[Sensor]:
    """The sensors ``profile(sensors=spec)`` uses, shared out between the ranks of a node."""
    if spec is None:
        return owned_sensors(
            detect(rated_cpu_power_w=rated_cpu_power_w),
            rank=local_rank(),
            cuda_device=current_cuda_device(),
        )
    items = list(spec)
    if all(isinstance(s, str) for s in items):
        found = detect(names=[str(s) for s in items], rated_cpu_power_w=rated_cpu_power_w)
        # Named kinds are still shared out between ranks: each device is counted once.
        return owned_sensors(found, rank=local_rank(), cuda_device=current_cuda_device())
    bad = [s for s in items if not isinstance(s, Sensor)]
    if bad:
        raise ConfigError(f"sensors must be Sensor objects or sensor kind names, got {bad[0]!r}")
    return items  # type: ignore[return-value]


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
