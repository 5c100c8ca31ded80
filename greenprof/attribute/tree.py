"""Self and inclusive energy over the module tree (design rule 5).

Joules are attributed to the innermost module running (self energy). A parent's inclusive energy is
its own joules plus every descendant's, found by qualified-name prefix: ``encoder.layer.0`` is a
descendant of ``encoder`` and of the root ``""``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from greenprof.schema import NOT_MODULES

TREE_COLUMNS = [
    "module",
    "type",
    "parent",
    "depth",
    "calls",
    "self_time_s",
    "self_energy_j",
    "self_energy_lo_j",
    "self_energy_hi_j",
    "energy_j",
    "energy_lo_j",
    "energy_hi_j",
]

#: Optimizers are rows of their own (``optimizer:Adam``), never children of the model.
OPTIMIZER_PREFIX = "optimizer:"

_SUMMED = ["time_s", "energy_j", "energy_lo_j", "energy_hi_j"]


def parent_of(module: str, known: set[str]) -> str | None:
    """Return the qualified name of ``module``'s parent, or ``None`` for a top-level module.

    The root ``""`` is the parent of undotted names only when the root itself is in ``known``;
    where several root models share a session their names carry a class-name prefix instead.
    Optimizer rows and the outside-modules row have no parent.
    """
    if module == "" or module in NOT_MODULES or module.startswith(OPTIMIZER_PREFIX):
        return None
    if "." in module:
        return module.rsplit(".", 1)[0]
    return "" if "" in known else None


def inclusive_energy(layers: pd.DataFrame) -> pd.DataFrame:
    """Return per-module self and inclusive energy, all phases summed.

    Ancestors that never ran themselves (a ``ModuleList`` is never called) are added with zero self
    energy and an empty ``type`` so that the result is a complete tree. The lower and upper bounds
    of a sum are the sums of the bounds: attribution errors of siblings are not independent, so
    this is the honest (if wide) interval.

    Args:
        layers: a frame shaped like :meth:`greenprof.Session.layers`.

    Returns:
        One row per module with the columns of :data:`TREE_COLUMNS`, highest inclusive energy
        first. ``energy_j`` is inclusive; ``self_energy_j`` is the module's own.

    Example:
        >>> rows = pd.DataFrame({"module": ["", "fc"], "type": ["Net", "Linear"],
        ...     "phase": ["forward", "forward"], "calls": [1, 1], "time_s": [0.1, 0.2],
        ...     "energy_j": [1.0, 2.0], "energy_lo_j": [0.5, 1.5], "energy_hi_j": [1.5, 2.5]})
        >>> float(inclusive_energy(rows).set_index("module").loc["", "energy_j"])
        3.0
    """
    own = self_per_module(layers)
    known = set(own.index)
    for module in list(known):
        parent = parent_of(module, known)
        while parent is not None and parent not in known:
            known.add(parent)
            parent = parent_of(parent, known)
    own = own.reindex(sorted(known)).fillna({"type": "", **{c: 0.0 for c in _SUMMED}})
    own["calls"] = own["calls"].fillna(0).astype("int64")
    parents = {m: parent_of(m, known) for m in own.index}
    position = {m: i for i, m in enumerate(own.index)}
    inclusive = own[["energy_j", "energy_lo_j", "energy_hi_j"]].to_numpy(dtype=float, copy=True)
    # Deepest first, so each child's inclusive sum is final before it is added to its parent.
    for module in sorted(known, key=_dots, reverse=True):
        parent = parents[module]
        if parent is not None:
            inclusive[position[parent]] += inclusive[position[module]]
    return _assemble(own, inclusive, parents)


def self_per_module(layers: pd.DataFrame) -> pd.DataFrame:
    """Return each module's own time, joules and bounds over the phases in ``layers``.

    Indexed by module, with ``type`` and ``calls``: the largest per-phase count, since a
    backward pass belongs to the forward call that made it.
    """
    grouped = layers.groupby("module", sort=False)
    own = grouped[_SUMMED].sum()
    own["calls"] = grouped["calls"].max()
    own["type"] = grouped["type"].first()
    return own


def _dots(module: str) -> int:
    return -1 if module == "" else module.count(".")


def _depths(parents: dict[str, str | None]) -> dict[str, int]:
    depths: dict[str, int] = {}

    def depth(module: str) -> int:
        if module not in depths:
            parent = parents[module]
            depths[module] = 0 if parent is None else depth(parent) + 1
        return depths[module]

    for module in parents:
        depth(module)
    return depths


def _assemble(
    own: pd.DataFrame, inclusive: np.ndarray, parents: dict[str, str | None]
) -> pd.DataFrame:
    depths = _depths(parents)
    tree = pd.DataFrame(
        {
            "module": own.index.astype(str),
            "type": own["type"].astype(str).to_numpy(),
            "parent": [parents[m] for m in own.index],
            "depth": [depths[m] for m in own.index],
            "calls": own["calls"].to_numpy(),
            "self_time_s": own["time_s"].to_numpy(),
            "self_energy_j": own["energy_j"].to_numpy(),
            "self_energy_lo_j": own["energy_lo_j"].to_numpy(),
            "self_energy_hi_j": own["energy_hi_j"].to_numpy(),
            "energy_j": inclusive[:, 0],
            "energy_lo_j": inclusive[:, 1],
            "energy_hi_j": inclusive[:, 2],
        }
    )
    return tree.sort_values(["energy_j", "module"], ascending=[False, True]).reset_index(drop=True)
