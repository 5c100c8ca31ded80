"""Token counts and prefill/decode timing of text generation, while a profile runs.

While a profile is active, ``transformers.GenerationMixin.generate`` (when transformers is
already imported) is wrapped: each call runs its model's first outermost forward in region
``prefill`` and the rest in region ``decode``, and leaves one record of its timing and token
counts. Plain decoding loops say how many tokens they made with :func:`tokens`. The records are
plain JSON-safe dicts; the profiler turns them into joules (:mod:`greenprof.attribute.generation`).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable
from typing import Any

from greenprof.clock import now_ns
from greenprof.errors import ConfigError
from greenprof.track.regions import innermost_region, region

PREFILL = "prefill"
DECODE = "decode"

_active: GenerationWatch | None = None


class GenerationWatch:
    """Wraps ``generate`` from :meth:`install` to :meth:`remove`; collects per-call records.

    Attributes:
        calls: one dict per ``generate()`` call: ``prompt_tokens``, ``new_tokens``,
            ``prefill_s``, ``decode_s``, ``note``.
        tokens: tokens reported by :func:`tokens`, by the region they were reported in.
    """

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.tokens: dict[str, int] = {}
        self._original: Any = None
        self._owner: Any = None
        self.hooked = False  # whether generate() was wrapped at install

    def install(self) -> None:
        """Wrap ``GenerationMixin.generate`` (if transformers is imported) and accept tokens()."""
        global _active
        _active = self
        self.calls, self.tokens, self.hooked = [], {}, False
        module = sys.modules.get("transformers.generation.utils")
        owner = getattr(module, "GenerationMixin", None)
        if owner is None or "generate" not in owner.__dict__:
            return
        self._owner, self._original = owner, owner.__dict__["generate"]
        self.hooked = True
        owner.generate = _wrapped(self._original, self)

    def remove(self) -> None:
        """Put ``generate`` back as it was; later tokens() calls count nowhere."""
        global _active
        if _active is self:
            _active = None
        if self._owner is not None:
            self._owner.generate = self._original
            self._owner = self._original = None


def tokens(n: int) -> None:
    """Say that the code since the region's start produced ``n`` tokens (plain decoding loops).

    Counts ``n`` towards the innermost open :func:`greenprof.region` (``""`` outside any);
    ``session.generation()`` then has one row per region that got tokens, with that region's
    joules and time and ``new_tokens`` the sum of its counts (``prompt_tokens`` for region
    ``prefill``). Outside a profile it does nothing.

    Args:
        n: number of tokens, >= 0.

    Raises:
        ConfigError: when ``n`` is not a non-negative integer.

    Example:
        >>> with greenprof.profile() as prof, greenprof.region("decode"):  # doctest: +SKIP
        ...     for _ in range(32):
        ...         next_ids = step(model, next_ids)
        ...         greenprof.tokens(next_ids.shape[0])
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"tokens(n) needs an integer n >= 0, got {n!r}")
    watch = _active
    if watch is None:
        return
    name = innermost_region()
    watch.tokens[name] = watch.tokens.get(name, 0) + n


def _wrapped(original: Any, watch: GenerationWatch) -> Any:
    @functools.wraps(original)
    def generate(model: Any, *args: Any, **kwargs: Any) -> Any:
        if _active is not watch:  # another profile, or none: not ours to record
            return original(model, *args, **kwargs)
        record: dict[str, Any] = {"prefill_s": 0.0, "decode_s": 0.0, "note": ""}
        marks = {"t0": now_ns(), "first": 0}
        prefill, decode = region(PREFILL), region(DECODE)

        def after_forward(*_: Any) -> None:
            if not marks["first"]:
                marks["first"] = now_ns()
                prefill.__exit__(None, None, None)
                decode.__enter__()
            # Only the first forward matters: without a hook of its own, each decode step's
            # call of the model takes torch's fast path (torch runs a copy of the hooks list).
            handle.remove()

        handle = model.register_forward_hook(after_forward)
        prefill.__enter__()
        try:
            out = original(model, *args, **kwargs)
        except BaseException as exc:
            # The call's time and joules stay in the table, with why it made no tokens.
            record.update(prompt_tokens=0, new_tokens=0, note=f"generate() raised: {exc}")
            watch.calls.append(record)
            raise
        finally:
            handle.remove()
            t1 = now_ns()
            (decode if marks["first"] else prefill).__exit__(None, None, None)
            first = marks["first"] or t1
            record["prefill_s"] = (first - marks["t0"]) * 1e-9
            record["decode_s"] = (t1 - first) * 1e-9
        try:
            record.update(_counts(model, args, kwargs, out))
        except Exception as exc:  # counting must never break the user's generate
            record.update(prompt_tokens=0, new_tokens=0, note=f"tokens not counted: {exc}")
        watch.calls.append(record)
        return out

    return generate


def _counts(model: Any, args: tuple, kwargs: dict[str, Any], out: Any) -> dict[str, Any]:
    """Prompt tokens (padding excluded) and new tokens (each sequence up to its EOS)."""
    notes: list[str] = []
    ids = kwargs.get("input_ids", args[0] if args else None)
    mask = kwargs.get("attention_mask")
    if mask is not None:
        prompt = int(mask.sum())
    elif ids is not None:
        prompt = int(ids.numel())
    elif kwargs.get("inputs_embeds") is not None:
        prompt = int(kwargs["inputs_embeds"].shape[0] * kwargs["inputs_embeds"].shape[1])
    else:
        prompt = 0
        notes.append("no input_ids: prompt tokens not counted")
    sequences = getattr(out, "sequences", out)
    config = kwargs.get("generation_config") or getattr(model, "generation_config", None)
    encoder_decoder = bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))
    if encoder_decoder:
        start = 1  # the decoder's start token was not generated
    elif ids is not None and sequences.shape[-1] >= ids.shape[-1]:
        start = ids.shape[-1]
    else:
        start = 0  # from inputs_embeds only, the output holds only the new tokens
    new = sequences[:, start:]
    eos = kwargs.get("eos_token_id", getattr(config, "eos_token_id", None))
    new_tokens = _until_eos(new.tolist(), _as_set(eos))
    beams = int(kwargs.get("num_beams", getattr(config, "num_beams", 1)) or 1)
    if beams > 1:
        notes.append(
            f"beam search ({beams} beams): new_tokens counts the returned sequences; "
            "decode computed every beam"
        )
    return {"prompt_tokens": prompt, "new_tokens": new_tokens, "note": "; ".join(notes)}


def _as_set(eos: Any) -> set[int]:
    if eos is None:
        return set()
    if hasattr(eos, "tolist"):
        eos = eos.tolist()
    return {int(e) for e in eos} if isinstance(eos, Iterable) else {int(eos)}


def _until_eos(rows: list[list[int]], eos: set[int]) -> int:
    """Tokens per row up to and including the first EOS (the rest is padding), summed."""
    total = 0
    for row in rows:
        n = len(row)
        for i, token in enumerate(row):
            if token in eos:
                n = i + 1
                break
        total += n
    return total


def active_watch() -> GenerationWatch | None:
    """The watch of the running profile, if any."""
    return _active


__all__ = ["DECODE", "PREFILL", "GenerationWatch", "active_watch", "tokens"]
