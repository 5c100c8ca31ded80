"""The result of a profile: per-layer joules, sensor samples and a bounded span trace.

A Session is the only thing renderers see. It saves as a run directory of plain files (JSON plus
CSV tables, never pickle) that any later greenprof, or any other tool, can read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from greenprof.errors import SessionFormatError
from greenprof.presenters import present
from greenprof.schema import OUTSIDE_MODULE, PHASES  # noqa: F401 - part of the session's vocabulary

#: Bumped whenever a saved run directory changes in a way older readers cannot follow.
FORMAT_VERSION = 1

LAYER_COLUMNS = [
    "module",
    "type",
    "phase",
    "calls",
    "time_s",
    "energy_j",
    "energy_lo_j",
    "energy_hi_j",
]
#: Layer columns a newer greenprof adds, with the value an older run directory reads as.
LAYER_EXTRA_COLUMNS: dict[str, object] = {
    "method": "",  # how the row was measured: replayed, shared signature, fit, time split
    "power_w": 0.0,  # energy_j / time_s, with its interval
    "power_lo_w": 0.0,
    "power_hi_w": 0.0,
    "region": "",  # the innermost greenprof.region() the row ran in; "" outside any
}
SAMPLE_COLUMNS = ["sensor", "t_s", "energy_j"]
SPAN_COLUMNS = ["module", "phase", "t0_s", "t1_s", "depth"]
#: Energy and time per window of consecutive steps (optional: older runs have none).
STEP_COLUMNS = ["window", "steps", "t0_s", "t1_s", "time_s", "cpu_s"] + LAYER_COLUMNS[-3:]
#: Self seconds per window and module, all phases (optional).
STEP_MODULE_COLUMNS = ["window", "module", "time_s"]


META_FILE = "session.json"
LAYERS_FILE = "layers.csv"
#: A merged run's layer rows of each rank (``rank`` first, then the layer columns).
RANK_LAYERS_FILE = "layers_by_rank.csv"
SAMPLES_FILE = "samples.csv"
SPANS_FILE = "spans.csv"
STEPS_FILE = "steps.csv"
STEP_MODULES_FILE = "step_modules.csv"
REPORT_FILE = "report.html"


def _frame(
    rows: pd.DataFrame | None, columns: list[str], extra: dict[str, object] | None = None
) -> pd.DataFrame:
    """``rows`` with exactly ``columns`` plus the ``extra`` ones (defaults where missing)."""
    extra = extra or {}
    if rows is None or len(rows) == 0:
        names = [*columns, *extra]
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in names})
    frame = rows[columns].reset_index(drop=True)
    for column, default in extra.items():
        frame[column] = rows[column].to_numpy() if column in rows else default
    return frame


def _dtype(column: str) -> str:
    if column in ("module", "type", "phase", "sensor", "method", "region"):
        return "object"
    if column in ("calls", "depth", "rank", "window"):
        return "int64"
    return "float64"


class Session:
    """Everything one profile measured.

    Attributes:
        meta: facts of the run (versions, command, host, sensors, totals, warnings).

    Example:
        >>> import greenprof
        >>> from greenprof.sensors import ReplaySensor
        >>> sensor = ReplaySensor([0.0, 10.0], [0.0, 50.0], name="demo")
        >>> with greenprof.profile(sensors=[sensor]) as prof:  # doctest: +SKIP
        ...     model(batch)
        >>> prof.session.layers().head()  # doctest: +SKIP
    """

    def __init__(
        self,
        meta: dict[str, Any],
        layers: pd.DataFrame | None = None,
        samples: pd.DataFrame | None = None,
        spans: pd.DataFrame | None = None,
        rank_layers: pd.DataFrame | None = None,
        *,
        steps: pd.DataFrame | None = None,
        step_modules: pd.DataFrame | None = None,
    ) -> None:
        self.meta = dict(meta)
        self.meta.setdefault("format_version", FORMAT_VERSION)
        self.meta.setdefault("warnings", [])
        self.meta.setdefault("sensors", [])
        self._layers = _frame(layers, LAYER_COLUMNS, LAYER_EXTRA_COLUMNS)
        self._samples = _frame(samples, SAMPLE_COLUMNS)
        self._spans = _frame(spans, SPAN_COLUMNS)
        self._rank_layers = (
            None
            if rank_layers is None
            else _frame(rank_layers, ["rank", *LAYER_COLUMNS], LAYER_EXTRA_COLUMNS)
        )
        self._steps = _frame(steps, STEP_COLUMNS)
        self._step_modules = _frame(step_modules, STEP_MODULE_COLUMNS)

    # ----------------------------------------------------------------- queries
    def layers(self, *, by_rank: bool = False) -> pd.DataFrame:
        """Return one row per (module, phase, region), highest self energy first (a copy).

        ``region`` is the innermost :func:`greenprof.region` the row ran in ("" outside any;
        ``eval`` for forwards without gradients in a run that also trains).

        Args:
            by_rank: one row per (rank, module, phase, region) instead, with a ``rank`` column
                first: a merged run of several ranks keeps each rank's rows; a single process's
                rows are all its own rank's (``meta["rank"]``, else 0).
        """
        if not by_rank:
            return self._layers.copy()
        if self._rank_layers is not None:
            return self._rank_layers.copy()
        own = self._layers.copy()
        own.insert(0, "rank", int(self.meta.get("rank") or 0))
        return own

    def samples(self) -> pd.DataFrame:
        """Return each sensor's cumulative energy over time (``sensor, t_s, energy_j``)."""
        return self._samples.copy()

    def spans(self) -> pd.DataFrame:
        """Return the bounded span trace (``module, phase, t0_s, t1_s, depth``)."""
        return self._spans.copy()

    def steps(self) -> pd.DataFrame:
        """Return energy and time per window of consecutive steps (empty when not recorded).

        Columns :data:`STEP_COLUMNS`: a window holds ``steps`` consecutive steps (a few sensor
        updates long, at most 100 windows, the first step left out); ``cpu_s`` is the process's
        CPU time in it; joules are all sensors' together.
        """
        return self._steps.copy()

    def step_modules(self) -> pd.DataFrame:
        """Return self seconds per window of :meth:`steps` and module (all phases summed)."""
        return self._step_modules.copy()

    @property
    def total_energy_j(self) -> float:
        """Measured (or estimated) joules of the whole profile, all sensors together."""
        return float(self.meta.get("total_energy_j", float(self._layers["energy_j"].sum())))

    @property
    def total_energy_lo_j(self) -> float:
        """Lower bound of :attr:`total_energy_j`."""
        return float(self.meta.get("total_energy_lo_j", self.total_energy_j))

    @property
    def total_energy_hi_j(self) -> float:
        """Upper bound of :attr:`total_energy_j`."""
        return float(self.meta.get("total_energy_hi_j", self.total_energy_j))

    @property
    def duration_s(self) -> float:
        """Wall time the profile covered, in seconds."""
        return float(self.meta.get("duration_s", 0.0))

    @property
    def estimated(self) -> bool:
        """True when any joule in this session comes from an estimating sensor."""
        return (
            any(not s.get("measured", False) for s in self.meta["sensors"])
            or not self.meta["sensors"]
        )

    @property
    def warnings(self) -> list[str]:
        """Warnings about resolution, failed sensors and hook inconsistencies."""
        return list(self.meta["warnings"])

    def total(self) -> float:
        """Same as :attr:`total_energy_j`, for sentences like ``session.total()``."""
        return self.total_energy_j

    def by_module(self) -> pd.DataFrame:
        """Return self energy per module, all phases summed, highest first.

        ``calls`` is the largest per-phase count: a backward pass is not a second call.
        """
        from greenprof.attribute.tree import self_per_module

        own = self_per_module(self._layers).reset_index()
        columns = ["module", "type", "calls", "time_s", "energy_j", "energy_lo_j", "energy_hi_j"]
        return own[columns].sort_values("energy_j", ascending=False).reset_index(drop=True)

    def by_rank(self) -> pd.DataFrame:
        """Return energy, time and steps per rank of a multi-process run (empty otherwise).

        Columns ``rank, host, energy_j, energy_lo_j, energy_hi_j, duration_s, steps``; the
        spread of ``duration_s`` and ``energy_j`` shows stragglers. Ranks that wrote no part are
        listed in ``meta["missing_ranks"]``.
        """
        columns = ["rank", "host", "energy_j", "energy_lo_j", "energy_hi_j", "duration_s", "steps"]
        rows = self.meta.get("by_rank") or []
        frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns)
        return frame.sort_values("rank", ignore_index=True)

    def generation(self) -> pd.DataFrame:
        """Return joules per token of text generation: one row per ``generate()`` call.

        Rows come from ``meta["generation"]``: first one per ``generate()`` call of a
        transformers model run inside the profile (``source`` ``"generate"``), then one per
        region in which ``greenprof.tokens(n)`` counted tokens. ``prompt_tokens`` is summed over
        the batch without padding (the attention mask); ``new_tokens`` over the returned
        sequences, each up to and including its end-of-sequence token. ``prefill_*`` covers
        a call up to the end of its first forward (region ``prefill``), ``decode_*`` the rest
        (region ``decode``); each region's joules are the sum of its layer rows, split between
        calls by their time in it, with bounds (``_lo_j``/``_hi_j``). ``j_per_new_token`` is
        ``decode_j / new_tokens``, ``j_per_prompt_token`` ``prefill_j / prompt_tokens`` (NaN
        where nothing was counted). ``note`` says what was not counted exactly (beam search,
        ...). Empty, with the reason in ``meta["generation_note"]``, when nothing generated.
        """
        from greenprof.attribute.generation import GENERATION_COLUMNS

        rows = self.meta.get("generation") or []
        frame = pd.DataFrame(
            [{c: r.get(c) for c in GENERATION_COLUMNS} for r in rows], columns=GENERATION_COLUMNS
        )
        numbers = [c for c in GENERATION_COLUMNS if c.endswith(("_s", "_j", "_token"))]
        frame[numbers] = frame[numbers].astype(float)
        frame[["call", "prompt_tokens", "new_tokens"]] = frame[
            ["call", "prompt_tokens", "new_tokens"]
        ].astype("int64")
        if not rows:
            self.meta.setdefault("generation_note", "no text generation was recorded")
        return frame

    def by_phase(self) -> pd.DataFrame:
        """Return energy and time per phase."""
        grouped = self._layers.groupby("phase", as_index=False)[["time_s", "energy_j"]].sum()
        return grouped.sort_values("energy_j", ascending=False).reset_index(drop=True)

    def inclusive(self) -> pd.DataFrame:
        """Return per-module inclusive energy: a module's own joules plus its descendants'."""
        from greenprof.attribute.tree import inclusive_energy

        return inclusive_energy(self._layers)

    def summary(self, n: int = 10) -> str:
        """Return a terminal summary of the top ``n`` layers (rendered by the report stage)."""
        return present("summary", self, n=n)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        unit = "J (estimated)" if self.estimated else "J"
        return (
            f"<greenprof.Session {self.total_energy_j:.4g} {unit} in {self.duration_s:.3g} s, "
            f"{len(self._layers)} rows>"
        )

    def _repr_html_(self) -> str:
        return present("notebook", self)

    # --------------------------------------------------------------- save/load
    def save(self, directory: str | Path) -> Path:
        """Write this session as a run directory; returns its path."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self._layers.to_csv(path / LAYERS_FILE, index=False)
        self._samples.to_csv(path / SAMPLES_FILE, index=False)
        self._spans.to_csv(path / SPANS_FILE, index=False)
        if self._rank_layers is not None:
            self._rank_layers.to_csv(path / RANK_LAYERS_FILE, index=False)
        for name, frame in ((STEPS_FILE, self._steps), (STEP_MODULES_FILE, self._step_modules)):
            if len(frame):
                frame.to_csv(path / name, index=False)
        # Meta last: its presence marks a complete directory.
        write_json_atomic(path / META_FILE, self.meta)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Session:
        """Read a run directory written by :meth:`save`.

        Raises:
            SessionFormatError: naming the file and the problem when the directory is missing,
                truncated, corrupt or written by a newer format.
        """
        path = Path(directory)
        if not path.is_dir():
            raise SessionFormatError(f"{path}: no such run directory")
        meta_path = path / META_FILE
        if not meta_path.is_file():
            raise SessionFormatError(
                f"{meta_path}: missing; {path} is not a complete greenprof run directory"
            )
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SessionFormatError(f"{meta_path}: not valid JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise SessionFormatError(f"{meta_path}: expected a JSON object")
        version = meta.get("format_version")
        if not isinstance(version, int):
            raise SessionFormatError(f"{meta_path}: no format_version; not a greenprof session")
        if version > FORMAT_VERSION:
            raise SessionFormatError(
                f"{meta_path}: written in format {version} by greenprof "
                f"{meta.get('greenprof_version', '?')}; this greenprof reads format "
                f"{FORMAT_VERSION} and older. Upgrade greenprof to read it."
            )
        layers = _read_table(
            path / LAYERS_FILE, LAYER_COLUMNS, required=True, optional=list(LAYER_EXTRA_COLUMNS)
        )
        samples = _read_table(path / SAMPLES_FILE, SAMPLE_COLUMNS, required=False)
        spans = _read_table(path / SPANS_FILE, SPAN_COLUMNS, required=False)
        rank_layers = _read_table(
            path / RANK_LAYERS_FILE,
            ["rank", *LAYER_COLUMNS],
            required=False,
            optional=list(LAYER_EXTRA_COLUMNS),
        )
        steps = _read_table(path / STEPS_FILE, STEP_COLUMNS, required=False)
        step_modules = _read_table(path / STEP_MODULES_FILE, STEP_MODULE_COLUMNS, required=False)
        return cls(
            meta, layers, samples, spans, rank_layers, steps=steps, step_modules=step_modules
        )


def _read_table(
    path: Path, columns: list[str], *, required: bool, optional: list[str] | None = None
) -> pd.DataFrame | None:
    if not path.is_file():
        if required:
            raise SessionFormatError(f"{path}: missing")
        return None
    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise SessionFormatError(f"{path}: empty file (truncated?)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise SessionFormatError(f"{path}: cannot be parsed ({exc})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SessionFormatError(f"{path}: missing columns {', '.join(missing)}")
    for column in [*columns, *(c for c in optional or () if c in frame.columns)]:
        kind = _dtype(column)
        if kind == "object":
            values = frame[column].astype(object)
            frame[column] = values.where(values.notna(), "").astype(str)
            continue
        numeric = pd.to_numeric(frame[column], errors="coerce")
        if numeric.isna().any():
            row = int(numeric.isna().to_numpy().nonzero()[0][0]) + 2
            raise SessionFormatError(f"{path}: line {row}: column {column} is not a number")
        frame[column] = numeric.astype(kind)
    return frame


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON through a temporary file, so a crash leaves the old file whole."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(jsonable(data), indent=2, allow_nan=False), encoding="utf-8")
    tmp.replace(path)


def jsonable(value: Any) -> Any:
    """Replace what JSON cannot hold (NaN, numpy scalars, paths) with plain values."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float) or hasattr(value, "item"):
        number = float(value)
        return number if math.isfinite(number) else None
    return str(value)
