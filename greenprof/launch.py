"""Several processes, one run: each rank's part of the run directory, and their merge.

Under a launcher that sets ``RANK`` and ``WORLD_SIZE`` (``torch.distributed.run``, ``torchrun``),
every rank profiles itself and saves its part as ``RUN_DIR/rank-<N>/``. After saving, each rank
merges the parts present so far into ``RUN_DIR`` itself, one rank at a time (a file lock); the
last rank to finish therefore writes the complete run, and when a rank dies the survivors' merge
names it. ``greenprof run --nproc-per-node`` launches through ``torch.distributed.run`` and
merges once more when the launcher returns.

Example:
    >>> session = merge_parts(Path("reports/ddp"), world_size=2)  # doctest: +SKIP
    >>> session.meta["ranks"], session.by_rank()  # doctest: +SKIP
"""

from __future__ import annotations

import fcntl
import os
import signal
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from greenprof.errors import SessionFormatError, Terminated
from greenprof.sensors.ranks import OWN_GPU_FIX
from greenprof.session import META_FILE, Session

#: Folder of one rank's part inside a run directory.
PART_PREFIX = "rank-"
_LOCK_FILE = ".merge.lock"


@dataclass(frozen=True)
class RankInfo:
    """Where this process stands in a multi-process job.

    Attributes:
        rank: global rank.
        world_size: number of ranks in the job.
        local_rank: rank on this node.
        run_id: the launcher's job id, when it gives a real one.
    """

    rank: int
    world_size: int
    local_rank: int
    run_id: str | None = None


def rank_info(env: Mapping[str, str] | None = None) -> RankInfo | None:
    """This process's rank, or None outside a job of several processes."""
    env = os.environ if env is None else env
    try:
        world_size = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        return None
    if world_size <= 1:
        return None
    run_id = env.get("TORCHELASTIC_RUN_ID")
    return RankInfo(rank, world_size, local, run_id if run_id and run_id != "none" else None)


def part_dir(run_dir: Path, rank: int) -> Path:
    """The folder where ``rank`` writes its part of ``run_dir``."""
    return run_dir / f"{PART_PREFIX}{rank}"


@contextmanager
def _merge_lock(run_dir: Path) -> Iterator[None]:
    with open(run_dir / _LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def save_part_and_merge(
    session: Session,
    run_dir: Path,
    info: RankInfo,
    then: Callable[[Session], None] | None = None,
) -> Session:
    """Save this rank's ``session`` as its part of ``run_dir``; merge the parts present so far.

    Args:
        session: this rank's profile.
        run_dir: the run directory all ranks share.
        info: this process's rank.
        then: called with the merged session while no other rank merges (writes the report).

    Returns:
        The merged session, as written to ``run_dir``.
    """
    session.meta.update(rank=info.rank, world_size=info.world_size, local_rank=info.local_rank)
    session.save(part_dir(run_dir, info.rank))
    with _merge_lock(run_dir):
        merged = merge_parts(run_dir, info.world_size)
        merged.save(run_dir)
        if then is not None:
            then(merged)
    return merged


def merge_parts(run_dir: Path, world_size: int | None = None) -> Session:
    """Merge the rank parts of ``run_dir`` into one session (not saved).

    Args:
        run_dir: the run directory holding ``rank-<N>/`` parts.
        world_size: ranks the job had; the parts' own record when None.

    Raises:
        SessionFormatError: no part, a corrupt part, or parts written by different greenprof
            versions or commands.
    """
    parts = _load_parts(run_dir)
    if not parts:
        raise SessionFormatError(f"{run_dir}: no rank parts ({PART_PREFIX}N/{META_FILE}) found")
    first = parts[min(parts)]
    for field in ("greenprof_version", "command"):
        values = {str(p.meta.get(field)) for p in parts.values()}
        if len(values) > 1:
            raise SessionFormatError(
                f"{run_dir}: rank parts were written by different {field.replace('_', ' ')}s "
                f"({', '.join(sorted(values))}); write each run to a directory of its own"
            )
    if world_size is None:
        world_size = int(first.meta.get("world_size", len(parts)))
    ranks = sorted(parts)
    missing = [r for r in range(world_size) if r not in parts]
    layers = _summed_layers(parts)
    meta = _merged_meta(parts, ranks, missing, world_size)
    samples = (
        pd.concat(
            [_prefixed(parts[r].samples(), r) for r in ranks if len(parts[r].samples())],
            ignore_index=True,
        )
        if any(len(parts[r].samples()) for r in ranks)
        else None
    )
    return Session(meta, layers, samples, first.spans(), _rank_layers(parts))


def _load_parts(run_dir: Path) -> dict[int, Session]:
    parts: dict[int, Session] = {}
    if not run_dir.is_dir():
        return parts
    for path in run_dir.iterdir():
        suffix = path.name[len(PART_PREFIX) :]
        if path.name.startswith(PART_PREFIX) and suffix.isdigit() and (path / META_FILE).is_file():
            parts[int(suffix)] = Session.load(path)
    return parts


def _summed_layers(parts: dict[int, Session]) -> pd.DataFrame:
    frames = [p.layers() for p in parts.values()]
    keys = ["module", "type", "phase", "region"]
    values = ["calls", "time_s", "energy_j", "energy_lo_j", "energy_hi_j"]
    joined = pd.concat(frames, ignore_index=True)
    summed = joined.groupby(keys, as_index=False, sort=False)[values].sum()
    return summed.sort_values(["energy_j", "time_s"], ascending=False, ignore_index=True)


def _rank_layers(parts: dict[int, Session]) -> pd.DataFrame:
    """Every rank's own rows, ``rank`` first: what ``layers(by_rank=True)`` returns."""
    return pd.concat([parts[r].layers(by_rank=True) for r in sorted(parts)], ignore_index=True)


def _prefixed(samples: pd.DataFrame, rank: int) -> pd.DataFrame:
    samples = samples.copy()
    samples["sensor"] = [f"rank{rank}:{name}" for name in samples["sensor"]]
    return samples


def _merged_meta(
    parts: dict[int, Session], ranks: list[int], missing: list[int], world_size: int
) -> dict[str, Any]:
    first = parts[ranks[0]]
    meta = {k: v for k, v in first.meta.items() if k not in ("rank", "local_rank")}
    by_rank = []
    for rank in ranks:
        part = parts[rank]
        by_rank.append(
            {
                "rank": rank,
                "local_rank": part.meta.get("local_rank"),
                "host": part.meta.get("host"),
                "energy_j": part.total_energy_j,
                "energy_lo_j": part.total_energy_lo_j,
                "energy_hi_j": part.total_energy_hi_j,
                "duration_s": part.duration_s,
                "steps": part.meta.get("steps"),
                "exit_status": part.meta.get("exit_status"),
                "sensors": [s.get("name") for s in part.meta.get("sensors", [])],
            }
        )
    sensors = [
        {**s, "name": f"rank{rank}:{s.get('name')}", "rank": rank}
        for rank in ranks
        for s in parts[rank].meta.get("sensors", [])
    ]
    total = sum(r["energy_j"] for r in by_rank)
    warnings = [w for w in first.meta.get("warnings", []) if "owns no sensor" not in w]
    for rank in ranks[1:]:
        for warning in parts[rank].meta.get("warnings", []):
            if warning not in warnings and "owns no sensor" not in warning:
                warnings.append(f"rank {rank}: {warning}")
    if missing:
        warnings.insert(
            0,
            f"rank(s) {', '.join(map(str, missing))} of {world_size} wrote no part (crashed, "
            "killed or still running): their joules are missing from this run",
        )
    warnings[:0] = _shared_devices(by_rank)
    owners = [r["rank"] for r in by_rank if r["sensors"]]
    if not owners:
        warnings.append("no rank owned a sensor: no energy was recorded")
    exit_statuses = [r["exit_status"] for r in by_rank if r["exit_status"]]
    meta.update(
        ranks=ranks,
        world_size=world_size,
        missing_ranks=missing,
        by_rank=by_rank,
        sensors=sensors,
        total_energy_j=total,
        total_energy_lo_j=sum(r["energy_lo_j"] for r in by_rank),
        total_energy_hi_j=sum(r["energy_hi_j"] for r in by_rank),
        duration_s=max(r["duration_s"] for r in by_rank),
        warnings=warnings,
        exit_status=exit_statuses[0] if exit_statuses else first.meta.get("exit_status", 0),
    )
    steps = meta.get("steps")
    if isinstance(steps, int) and steps > 0:
        # Data-parallel ranks take the same steps together: a step's joules are all ranks'.
        meta["energy_per_step_j"] = total / steps
    return meta


def _shared_devices(by_rank: list[dict[str, Any]]) -> list[str]:
    """A warning per sensor that several ranks of one host measured: it is counted twice."""
    owners: dict[tuple[str, str], list[int]] = {}
    for row in by_rank:
        for name in row["sensors"]:
            owners.setdefault((str(row["host"]), str(name)), []).append(row["rank"])
    return [
        f"ranks {', '.join(map(str, ranks))} on {host} all measured {name}: its joules are "
        f"counted {len(ranks)} times in the total. Give each rank a GPU of its own: {OWN_GPU_FIX}"
        for (host, name), ranks in owners.items()
        if len(ranks) > 1
    ]


def launch_ranks(launcher_args: list[str], greenprof_args: list[str], run_dir: Path) -> int:
    """Run ``greenprof run GREENPROF_ARGS`` in every rank through ``torch.distributed.run``.

    The launcher checks its own arguments (its message and exit status 2 when it rejects them,
    before any rank starts or any file is written). When it returns, the parts present are
    merged once more, so that a rank that died is named even if no survivor merged after it.

    Returns:
        The launcher's exit status.
    """
    import subprocess
    import sys

    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *launcher_args,
        "-m",
        "greenprof",
        "run",
        "--out",
        str(run_dir),
        *greenprof_args,
    ]
    status = subprocess.call(command)
    if _load_parts(run_dir):
        with _merge_lock(run_dir):
            merge_parts(run_dir).save(run_dir)
    return status


def rank_folder(folder: Path | None, ranks: RankInfo | None) -> Path | None:
    """A folder of this rank's own inside ``folder`` (TensorBoard logs, one per rank)."""
    if folder is None or ranks is None:
        return folder
    return folder / f"rank{ranks.rank}"


@contextmanager
def terminate_as_exit(running: Callable[[], bool]) -> Iterator[None]:
    """While active, SIGTERM stops the script (:class:`Terminated`, 143) but never the saving.

    A scheduler preempts a job with SIGTERM, and a launcher stops the other ranks with it when
    one fails; the run (or the rank's part) is then still saved. A SIGTERM that comes after the
    script ended is ignored until the saving is done.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers
        return

    def stop(signum: int, frame: object) -> None:
        if running():
            raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
