"""Which sensors one process of a multi-process job owns (design rule 6).

Under ``torch.distributed`` (or any launcher that sets ``LOCAL_RANK``), every rank profiles itself.
Each rank owns only the GPU it computes on, and the node's CPU sensors belong to local rank 0, so
that adding up the ranks' sessions counts nothing twice.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

from greenprof.cuda_state import cuda_in_use
from greenprof.sensors.base import Sensor

logger = logging.getLogger(__name__)


def local_rank(env: Mapping[str, str] | None = None) -> int | None:
    """This process's rank on its node, or None outside a multi-process job."""
    env = os.environ if env is None else env
    for name in ("LOCAL_RANK", "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"):
        value = env.get(name)
        if value is not None and value.strip().isdigit():
            return int(value)
    return None


def owned_sensors(
    sensors: Sequence[Sensor], *, rank: int | None, cuda_device: int | None = None
) -> list[Sensor]:
    """Keep the sensors this rank owns; the others are closed.

    Args:
        sensors: what detection found on this node.
        rank: local rank (None: a single process owns everything).
        cuda_device: the process-visible CUDA index this rank computes on; defaults to ``rank``
            (one GPU per rank, the launchers' convention).
    """
    if rank is None:
        return list(sensors)
    gpu = f"gpu:{rank if cuda_device is None else cuda_device}"
    kept, dropped = [], []
    for sensor in sensors:
        is_gpu = sensor.device.startswith("gpu")
        mine = sensor.device == gpu if is_gpu else rank == 0
        (kept if mine else dropped).append(sensor)
    for sensor in dropped:
        sensor.close()
    if dropped:
        logger.info(
            "greenprof: local rank %s profiles %s; other ranks own %s",
            rank,
            ", ".join(s.name for s in kept) or "no sensor",
            ", ".join(s.name for s in dropped),
        )
    return kept


def current_cuda_device() -> int | None:
    """The CUDA device this process computes on, when CUDA is initialised."""
    if not cuda_in_use():
        return None
    try:
        import torch

        return int(torch.cuda.current_device())
    except Exception:  # a broken CUDA install must not stop a CPU profile
        logger.debug("greenprof: CUDA device probe failed", exc_info=True)
    return None
