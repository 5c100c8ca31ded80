"""Hugging Face ``Trainer``: energy in the Trainer's own logs, and a run directory at the end.

Example:
    >>> from greenprof.integrations.transformers import GreenprofCallback
    >>> trainer = Trainer(model, args, train_dataset=data,  # doctest: +SKIP
    ...                   callbacks=[GreenprofCallback(out="runs/hf")])
    >>> trainer.train()  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import CallbackHandler

from greenprof.launch import rank_folder, rank_info, save_part_and_merge
from greenprof.profiler import profile
from greenprof.session import REPORT_FILE, Session

logger = logging.getLogger(__name__)


class GreenprofCallback(TrainerCallback):
    """Profile ``Trainer.train()`` and add energy figures to every log the Trainer writes.

    Each logging interval's log gains ``energy_j`` (joules since the previous log),
    ``energy_j_per_step`` and, when the Trainer knows them, ``energy_j_per_sample`` (from the
    global batch size) and ``energy_j_per_token`` (from ``num_input_tokens_seen``, with
    ``include_num_input_tokens_seen=True``). Where a sensor estimates, the keys start with
    ``estimated_``. The callback moves itself first among the Trainer's callbacks, so that every
    ``report_to`` backend (TensorBoard, W&B, MLflow, ...) receives these keys. Live figures are
    as fresh as the sensors' last update; the per-layer split and the uncertainty are in the run
    directory, written with its report when training ends. Evaluation inside training runs without
    gradients and so lands in region ``eval``. Under several processes each rank writes its part
    and the parts are merged (see :mod:`greenprof.launch`).

    Args:
        out: run directory written when training ends (``None``: only the logs and
            :attr:`session`).
        report: also write ``report.html`` into ``out``.
        **profile_options: passed to :class:`greenprof.profile` (``sensors``, ``interval_s``, ...).

    Attributes:
        session: the finished profile, after ``train()`` ended.
    """

    def __init__(
        self, out: str | Path | None = None, *, report: bool = True, **profile_options: Any
    ) -> None:
        self.out = Path(out) if out is not None else None
        self.report = report
        self.profile_options = profile_options
        self.session: Session | None = None
        self._prof: profile | None = None
        self._last_j = 0.0
        self._last_step = 0
        self._last_tokens = 0

    # ------------------------------------------------------------ trainer events
    def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:  # noqa: D102
        self._go_first()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:  # noqa: D102
        self._go_first()
        if self._prof is not None:  # a train() that raised left it open
            self._finish()
        self._prof = profile(
            meta={"command": "transformers.Trainer.train", "integration": "transformers"},
            tensorboard=rank_folder(self.profile_options.pop("tensorboard", None), rank_info()),
            **self.profile_options,
        )
        self._prof.__enter__()
        self._last_j, self._last_step = 0.0, state.global_step
        self._last_tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)

    def on_log(  # noqa: D102
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if self._prof is None or logs is None:
            return
        logs.update(self._interval_figures(args, state))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:  # noqa: D102
        self._finish()

    # ------------------------------------------------------------ figures
    def _interval_figures(self, args: Any, state: Any) -> dict[str, float]:
        assert self._prof is not None
        total_j = self._prof.energy_so_far_j()
        energy_j = total_j - self._last_j
        steps = state.global_step - self._last_step
        tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0) - self._last_tokens
        self._last_j, self._last_step = total_j, state.global_step
        self._last_tokens += tokens
        prefix = "estimated_" if any(not s.measured for s in self._prof.sensors) else ""
        out = {f"{prefix}energy_j": energy_j}
        if steps > 0:
            out[f"{prefix}energy_j_per_step"] = energy_j / steps
            batch = getattr(args, "train_batch_size", None)
            accumulation = getattr(args, "gradient_accumulation_steps", 1) or 1
            world = getattr(args, "world_size", 1) or 1
            if batch:
                out[f"{prefix}energy_j_per_sample"] = energy_j / (
                    steps * batch * accumulation * world
                )
        if tokens > 0:
            out[f"{prefix}energy_j_per_token"] = energy_j / tokens
        return out

    def _finish(self) -> None:
        prof, self._prof = self._prof, None
        if prof is None:
            return
        prof.__exit__(None, None, None)
        self.session = prof.session
        if self.out is None or self.session is None:
            return
        ranks = rank_info()
        if ranks is not None:
            save_part_and_merge(self.session, self.out, ranks, then=self._write_report)
        else:
            self.session.save(self.out)
            self._write_report(self.session)

    def _write_report(self, session: Session) -> None:
        if not self.report or self.out is None:
            return
        from greenprof.report.html import write_html

        try:
            write_html(session, self.out / REPORT_FILE)
        except Exception:  # the session is saved; `greenprof report` can write it later
            logger.warning("greenprof: could not write the report", exc_info=True)

    def _go_first(self) -> None:
        """Move this callback to the front of the Trainer's callbacks.

        The Trainer passes every callback the same ``logs`` dict in turn; the reporting callbacks
        come first by default, so figures added after them would reach none of them. The Trainer
        hands callbacks no reference to itself: the handler is found as the caller's ``self``.
        """
        frame = inspect.currentframe()
        caller = frame.f_back.f_back if frame is not None and frame.f_back is not None else None
        handler = caller.f_locals.get("self") if caller is not None else None
        if not isinstance(handler, CallbackHandler):
            logger.warning(
                "greenprof: could not reach the Trainer's callback list; callbacks listed before "
                "GreenprofCallback will not see the energy figures in their logs"
            )
            return
        if handler.callbacks and handler.callbacks[0] is not self and self in handler.callbacks:
            # call_event iterates this list: removing us and inserting at the front leaves every
            # callback after us at its index, so none is skipped or called twice.
            handler.callbacks.remove(self)
            handler.callbacks.insert(0, self)


__all__ = ["GreenprofCallback"]
