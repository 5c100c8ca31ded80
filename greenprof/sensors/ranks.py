"""Which sensors one process of a multi-process job owns (design rule 6).

Under ``torch.distributed`` (or any launcher that sets ``LOCAL_RANK``), every rank profiles itself.
Each rank owns only the GPU it computes on, and the node's CPU sensors belong to local rank 0, so
that adding up the ranks' sessions counts nothing twice.

Which GPU a rank computes on is known for sure only once it has chosen one
(``torch.cuda.set_device``) or sees one alone (``CUDA_VISIBLE_DEVICES`` per rank). Otherwise the
launchers' convention, local rank N on ``cuda:N``, is assumed, and where the process says
otherwise (CUDA initialised on another device, or a rank without a GPU of its own) the session
warns, naming the rank and what to do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from greenprof.cuda_state import cuda_in_use
from greenprof.errors import ConfigError
from greenprof.sensors.base import Sensor

logger = logging.getLogger(__name__)

#: How to give each rank a GPU of its own, said in every ownership warning.
OWN_GPU_FIX = (
    "call torch.cuda.set_device(int(os.environ['LOCAL_RANK'])) before the model is built, or "
    "start each rank with CUDA_VISIBLE_DEVICES set to its own GPU"
)


@dataclass
class Ownership:
    """What one rank measures, and why it may be the wrong GPU.

    Attributes:
        rank: local rank (None: a single process, which owns everything).
        gpus_seen: GPU devices this process sees (``"gpu:0"``, ...).
        gpu: the GPU device this rank measures (None: none).
        assumed: True when ``gpu`` follows the launchers' convention rather than the process.
        warnings: what the session must say about the choice.
    """

    rank: int | None
    gpus_seen: list[str] = field(default_factory=list)
    gpu: str | None = None
    assumed: bool = False
    warnings: list[str] = field(default_factory=list)

    def warnings_at_end(self, cuda_device: int | None) -> list[str]:
        """The start's warnings, and one more when the rank ended on a GPU it did not measure.

        Args:
            cuda_device: the process's current CUDA device when the profile ends.
        """
        if (
            not self.assumed
            or cuda_device is None
            or len(self.gpus_seen) < 2
            or self.gpu == f"gpu:{cuda_device}"
        ):
            return list(self.warnings)
        return [
            *self.warnings,
            f"local rank {self.rank} was measured on {self.gpu or 'no GPU'} (the launchers' "
            "convention: CUDA was not initialised when the profile started), but its current "
            f"CUDA device at the end was cuda:{cuda_device}. If it computed there, that GPU's "
            "joules are missing from this rank (and counted by the rank that owns it, possibly "
            f"twice): {OWN_GPU_FIX}.",
        ]


def local_rank(env: Mapping[str, str] | None = None) -> int | None:
    """This process's rank on its node, or None outside a multi-process job."""
    env = os.environ if env is None else env
    for name in ("LOCAL_RANK", "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"):
        value = env.get(name)
        if value is not None and value.strip().isdigit():
            return int(value)
    return None


def share_out(
    sensors: Sequence[Sensor], *, rank: int | None, cuda_device: int | None = None
) -> tuple[list[Sensor], Ownership]:
    """Keep the sensors this rank owns (the others are closed), and say how sure that is.

    Args:
        sensors: what detection found on this node.
        rank: local rank (None: a single process owns everything).
        cuda_device: the process-visible CUDA index this rank computes on, when CUDA is
            initialised; else local rank N is taken to compute on ``cuda:N`` (the launchers'
            convention), or on the only GPU it sees.
    """
    gpus = sorted({s.device for s in sensors if s.device.startswith("gpu")})
    ownership = Ownership(rank, gpus)
    if rank is None:
        return list(sensors), ownership
    ownership.gpu, ownership.assumed = _chosen_gpu(rank, cuda_device, gpus, ownership.warnings)
    kept, dropped = [], []
    for sensor in sensors:
        is_gpu = sensor.device.startswith("gpu")
        mine = sensor.device == ownership.gpu if is_gpu else rank == 0
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
    return kept, ownership


def _chosen_gpu(
    rank: int, cuda_device: int | None, gpus: list[str], warnings: list[str]
) -> tuple[str | None, bool]:
    """``(the GPU device this rank measures, whether that is only assumed)``."""
    if cuda_device is not None:
        if cuda_device != rank and len(gpus) > 1:
            warnings.append(
                f"local rank {rank} had CUDA initialised on cuda:{cuda_device} when the profile "
                f"started, the GPU that the launchers' convention gives local rank "
                f"{cuda_device}: greenprof measures gpu:{cuda_device} for this rank. If several "
                "ranks run there, its joules are counted once per rank; if this rank computes "
                f"on another GPU, that one is not measured: {OWN_GPU_FIX}."
            )
        return f"gpu:{cuda_device}", False
    if len(gpus) == 1:
        return gpus[0], False  # the only GPU this process sees (CUDA_VISIBLE_DEVICES per rank)
    if f"gpu:{rank}" in gpus:
        return f"gpu:{rank}", True
    if gpus:
        warnings.append(
            f"local rank {rank} sees {len(gpus)} GPUs ({', '.join(gpus)}) but none is its own by "
            f"the launchers' convention (cuda:LOCAL_RANK), and CUDA was not initialised when the "
            f"profile started: no GPU is measured for this rank: {OWN_GPU_FIX}."
        )
    return None, True


def owned_sensors(
    sensors: Sequence[Sensor], *, rank: int | None, cuda_device: int | None = None
) -> list[Sensor]:
    """The sensors this rank owns (see :func:`share_out`); the others are closed."""
    return share_out(sensors, rank=rank, cuda_device=cuda_device)[0]


def resolve_sensors(
    spec: Sequence[Sensor | str] | None, rated_cpu_power_w: float | None
) -> tuple[list[Sensor], Ownership | None]:
    """The sensors a profile uses, shared out between ranks, and how they were shared.

    Args:
        spec: ``None`` to detect, sensor kind names, or :class:`Sensor` objects (used as given).
        rated_cpu_power_w: rated CPU power for the CPU estimate.

    Raises:
        ConfigError: ``spec`` holds something that is neither a sensor nor a kind name.
    """
    from greenprof.sensors import detect

    items = None if spec is None else list(spec)
    if items is not None and not all(isinstance(s, str) for s in items):
        bad = [s for s in items if not isinstance(s, Sensor)]
        if bad:
            raise ConfigError(
                f"sensors must be Sensor objects or sensor kind names, got {bad[0]!r}"
            )
        return items, None  # type: ignore[return-value]
    names = None if items is None else [str(s) for s in items]
    found = detect(names=names, rated_cpu_power_w=rated_cpu_power_w)
    # Named kinds are shared out between ranks too: each device is counted once.
    return share_out(found, rank=local_rank(), cuda_device=current_cuda_device())


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
