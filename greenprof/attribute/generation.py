"""Joules per generated token: the rows of regions ``prefill``/``decode`` split per call.

Each region's joules (and bounds) are the sum of its per-layer rows, so the rows of the
generation table add up to what the layer table says those regions cost. A region shared by
several ``generate()`` calls is split between them by the time each call spent in it. Bounds are
summed like the layer table's (a conservative interval: the rows' errors are not independent).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

GENERATION_COLUMNS = [
    "call",
    "source",
    "prompt_tokens",
    "new_tokens",
    "prefill_s",
    "decode_s",
    "prefill_j",
    "prefill_lo_j",
    "prefill_hi_j",
    "decode_j",
    "decode_lo_j",
    "decode_hi_j",
    "j_per_new_token",
    "j_per_prompt_token",
    "note",
]

_BOUNDS = ("energy_j", "energy_lo_j", "energy_hi_j")


def region_totals(layers: pd.DataFrame, name: str) -> tuple[float, float, float, float]:
    """``(time_s, energy_j, energy_lo_j, energy_hi_j)`` of the layer rows in region ``name``."""
    if "region" not in layers.columns or len(layers) == 0:
        return 0.0, 0.0, 0.0, 0.0
    rows = layers[layers["region"] == name]
    return (float(rows["time_s"].sum()), *(float(rows[c].sum()) for c in _BOUNDS))


def _per(energy_j: float, count: int) -> float:
    return energy_j / count if count > 0 else math.nan


def generation_rows(
    layers: pd.DataFrame,
    calls: list[dict[str, Any]],
    tokens: dict[str, int],
    *,
    prefill: str = "prefill",
    decode: str = "decode",
) -> list[dict[str, Any]]:
    """One row per ``generate()`` call, then one per region that counted tokens by hand.

    Args:
        layers: the session's per-layer rows (with a ``region`` column).
        calls: per-call records (``prompt_tokens``, ``new_tokens``, ``prefill_s``,
            ``decode_s``, ``note``).
        tokens: tokens counted with ``greenprof.tokens(n)``, by region name.
        prefill: name of the region of the first forward of each call.
        decode: name of the region of the other forwards.

    Returns:
        JSON-safe dicts with the keys of :data:`GENERATION_COLUMNS`.
    """
    totals = {name: region_totals(layers, name) for name in {prefill, decode, *tokens}}
    rows: list[dict[str, Any]] = []
    for phase, key in ((prefill, "prefill_s"), (decode, "decode_s")):
        called_s = sum(c[key] for c in calls)
        # Tokens counted by hand in the same region: split by the region's time, leaving theirs.
        base_s = max(called_s, totals[phase][0]) if phase in tokens else called_s
        for i, call in enumerate(calls):
            if len(rows) <= i:
                rows.append({"call": i, "source": "generate", **_counts(call)})
            share = call[key] / base_s if base_s > 0 else 0.0
            phase_name = "prefill" if key == "prefill_s" else "decode"
            rows[i][key] = float(call[key])
            for suffix, value in zip(("_j", "_lo_j", "_hi_j"), totals[phase][1:], strict=True):
                rows[i][phase_name + suffix] = value * share
    for name, count in sorted(tokens.items()):
        time_s, energy_j, lo_j, hi_j = totals[name]
        own = 1.0
        if name in (prefill, decode) and calls:
            key = "prefill_s" if name == prefill else "decode_s"
            called_s = sum(c[key] for c in calls)
            own = max(0.0, 1.0 - called_s / time_s) if time_s > 0 else 0.0
        is_prompt = name == prefill
        row = {
            "call": len(rows),
            "source": token_source(name),
            "prompt_tokens": count if is_prompt else 0,
            "new_tokens": 0 if is_prompt else count,
            "prefill_s": time_s * own if is_prompt else 0.0,
            "decode_s": 0.0 if is_prompt else time_s * own,
            "note": "",
        }
        for phase in ("prefill", "decode"):
            mine = (phase == "prefill") == is_prompt
            for suffix, value in zip(("_j", "_lo_j", "_hi_j"), (energy_j, lo_j, hi_j), strict=True):
                row[phase + suffix] = value * own if mine else 0.0
        rows.append(row)
    for row in rows:
        row["j_per_new_token"] = _per(row["decode_j"], row["new_tokens"])
        row["j_per_prompt_token"] = _per(row["prefill_j"], row["prompt_tokens"])
    return rows


def token_source(region: str) -> str:
    """The ``source`` of the row of tokens counted by hand in ``region``."""
    return f"tokens in region {region!r}" if region else "tokens outside any region"


def decoded_in(rows: pd.DataFrame, region: str = "decode") -> int:
    """New tokens whose decoding ran in ``region``.

    Those of every ``generate()`` call and those counted there by hand; ``rows`` as
    ``Session.generation()`` returns them.
    """
    if rows.empty:
        return 0
    mine = rows["source"].isin(["generate", token_source(region)])
    return int(rows.loc[mine, "new_tokens"].sum())


def _counts(call: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt_tokens": int(call.get("prompt_tokens", 0)),
        "new_tokens": int(call.get("new_tokens", 0)),
        "note": str(call.get("note", "")),
    }


__all__ = ["GENERATION_COLUMNS", "decoded_in", "generation_rows", "region_totals", "token_source"]
