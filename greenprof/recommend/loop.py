"""``greenprof.optimize``: shrink the hottest layers one change at a time, keeping only proven wins.

The loop profiles the workload, asks the rules for candidates on the hottest layers, and tries
them best-first, each on a copy of the current model: apply, distil if the action is lossy,
re-profile the same workload, evaluate. A change is kept only when the joules per workload call
fell by more than the measurements' combined uncertainty **and** the metric stayed within the
allowed drop of the original. It is greedy: after every kept change the new model is profiled
again and the candidates re-ranked. It stops when the budget (a count of tried changes) is spent,
when no untried candidate is left, or when ``evaluate`` raises.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from greenprof.optimize_result import OptimizeResult, Step, write_history
from greenprof.recommend.actions import ActionContext, get_action
from greenprof.recommend.actions.distill import distill
from greenprof.recommend.candidates import Candidate
from greenprof.recommend.capture import capture_calls
from greenprof.recommend.judge import Futile, Judge, did_not_save
from greenprof.recommend.measure import (
    Measurement,
    ProfilerFactory,
    Workload,
    default_profiler,
    measure,
)
from greenprof.recommend.objective import check_objective, choose_objective, per_objective
from greenprof.recommend.progress import progress_bar
from greenprof.recommend.rules import recommend

logger = logging.getLogger(__name__)

__all__ = ["OptimizeResult", "Step", "optimize"]

Evaluate = Callable[[nn.Module], float]


class _Stop(Exception):
    """``evaluate`` raised on a changed model: the loop ends and keeps what it has."""

    def __init__(self, step: Step) -> None:
        super().__init__(step.reason)
        self.step = step


def optimize(
    model: nn.Module,
    workload: Workload,
    evaluate: Evaluate,
    *,
    max_metric_drop: float,
    higher_is_better: bool = True,
    relative: bool = False,
    exclude: Sequence[str] = (),
    budget: int = 8,
    objective: str = "auto",
    actions: Sequence[str] | None = None,
    distill_steps: int = 40,
    distill_temperature: float = 2.0,
    distill_lr: float = 3e-4,
    min_profile_s: float = 2.0,
    profile_options: dict[str, Any] | None = None,
    profiler: ProfilerFactory | None = None,
    out: str | Path | None = None,
    progress: bool | None = None,
) -> OptimizeResult:
    """Make ``workload(model)`` cost fewer joules without losing more than ``max_metric_drop``.

    Args:
        model: the trained model; it is deep-copied first and never changed.
        workload: ``workload(model)`` runs the work to make cheaper (e.g. inference on a batch
            set). Its model calls are also the inputs for tracing and distillation.
        evaluate: ``evaluate(model) -> float`` scores a model (accuracy, perplexity, ...).
        max_metric_drop: largest allowed loss of the metric against the original model, in the
            metric's units (or as a fraction of it with ``relative=True``).
        higher_is_better: False for metrics such as loss or perplexity.
        relative: read ``max_metric_drop`` as a fraction of the original metric.
        exclude: module names (and everything below them) never to touch.
        budget: how many changes to try at most (each variant of a candidate counts one).
        objective: what to make smaller: ``"j-per-call"`` (joules per workload call),
            ``"j-per-token"`` (the call's joules over the new tokens it generated, for
            workloads that call ``generate()`` or ``greenprof.tokens(n)``), or ``"auto"``:
            per token when the original model's workload generated text, else per call.
        actions: names of the actions allowed; default all with an expected saving.
        distill_steps: knowledge-distillation steps after a lossy change (0 = none).
        distill_temperature: softmax temperature of the distillation.
        distill_lr: learning rate of the distillation.
        min_profile_s: the workload is repeated until each profile lasts this long.
        profile_options: keyword arguments for ``greenprof.profile`` (sensors, interval_s, ...).
        profiler: factory of profiling context managers, replacing ``greenprof.profile``.
        out: directory to write ``history.json`` to after every step, and the full result at
            the end (also when the loop stops on an error).
        progress: show a progress bar on stderr; default: only when stderr is a terminal.

    Returns:
        The result: new model, history, before/after sessions and metrics.

    Raises:
        ConfigError: an unknown ``objective``, or ``"j-per-token"`` for a workload that
            generated no new tokens.
        Exception: whatever ``workload`` or ``evaluate`` raise on the *original* model (nothing
            can be compared without a baseline).

    Example:
        >>> result = greenprof.optimize(  # doctest: +SKIP
        ...     model, lambda m: m(batch), lambda m: accuracy(m, test_set), max_metric_drop=0.01
        ... )
        >>> print(result.summary())  # doctest: +SKIP
    """
    if budget < 0 or max_metric_drop < 0:
        raise ValueError("budget and max_metric_drop must not be negative")
    check_objective(objective)
    profiler = profiler or default_profiler(**(profile_options or {}))
    original = copy.deepcopy(model)
    current = copy.deepcopy(model)
    calls = capture_calls(current, workload)

    def per_call(candidate_model: nn.Module) -> Measurement:
        return measure(candidate_model, workload, profiler=profiler, min_seconds=min_profile_s)

    first = per_call(current)
    chosen = choose_objective(objective, first)

    def measured(candidate_model: nn.Module) -> Measurement:
        return per_objective(per_call(candidate_model), chosen)

    baseline = per_objective(first, chosen)
    metric_0 = float(evaluate(current))
    allowed = max_metric_drop * abs(metric_0) if relative else max_metric_drop
    judge = Judge(metric_0, allowed, higher_is_better, chosen)
    state = _State(current, baseline, metric_0)
    context = ActionContext(calls=calls, exclude=tuple(exclude))
    directory = Path(out) if out is not None else None
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    tried: set[tuple[Any, ...]] = set()
    futile = Futile()
    history: list[Step] = []
    stopped, error = "budget spent", None
    trials: list[tuple[Step, tuple[nn.Module, Measurement]]] = []
    bar = progress_bar(budget, progress)
    try:
        while len(history) < budget:
            candidate = _next_candidate(state, exclude, actions, tried, futile)
            if candidate is None:
                stopped = "no untried candidate left"
                break
            tried.add(candidate.key)
            spec = get_action(candidate.action)
            trials, first_step = [], len(history)
            for variant in spec.variants:
                if len(history) >= budget:
                    break
                params = {**candidate.params, **variant}
                bar.set_description(candidate.action)
                step, trial = _try(
                    candidate,
                    params,
                    state,
                    context,
                    judge,
                    measured,
                    evaluate,
                    index=len(history) + 1,
                    distill_steps=distill_steps if spec.heal else 0,
                    distill_options={"temperature": distill_temperature, "lr": distill_lr},
                )
                history.append(step)
                bar.update(1)
                logger.info("greenprof optimize: %s %s: %s", step.label, params, step.reason)
                if trial is not None:
                    trials.append((step, trial))
            steps = history[first_step:]
            if len(steps) == len(spec.variants) and all(did_not_save(s) for s in steps):
                futile.add(candidate.action, candidate.targets)
            if _keep_best(trials, state):
                # The model changed: the same change may pay again (another block, more heads).
                tried.discard(candidate.key)
                futile.clear()
            trials = []
            if directory is not None:
                write_history(directory, {"history": [vars(s) for s in history]})
    except _Stop as stop:
        history.append(stop.step)
        _keep_best(trials, state)
        stopped, error = "evaluate raised", str(stop)
    except KeyboardInterrupt:
        _keep_best(trials, state)
        stopped = "interrupted"
    finally:
        bar.close()
    result = _result(original, state, baseline, metric_0, history, judge, measured)
    result.stopped, result.error = stopped, error
    if directory is not None:
        result.save(directory)
    return result


class _State:
    """The model the loop has so far, its measurement and metric."""

    def __init__(self, model: nn.Module, measurement: Measurement, metric: float) -> None:
        self.model = model
        self.measurement = measurement
        self.metric = metric


def _next_candidate(
    state: _State,
    exclude: Sequence[str],
    actions: Sequence[str] | None,
    tried: set[tuple[Any, ...]],
    futile: Futile,
) -> Candidate | None:
    for candidate in recommend(state.measurement.session, state.model, exclude=exclude):
        if candidate.key in tried or candidate.expected_saving_j <= 0:
            continue
        if futile.covers(candidate.action, candidate.targets):
            continue
        if actions is not None and candidate.action not in actions:
            continue
        return candidate
    return None


def _try(
    candidate: Candidate,
    params: dict[str, Any],
    state: _State,
    context: ActionContext,
    judge: Judge,
    measured: Callable[[nn.Module], Measurement],
    evaluate: Evaluate,
    *,
    index: int,
    distill_steps: int,
    distill_options: dict[str, Any],
) -> tuple[Step, tuple[nn.Module, Measurement] | None]:
    """Apply one variant to a copy, measure and judge it; the copy comes back if it passed."""
    started = time.perf_counter()
    before = state.measurement
    step = Step(
        index=index,
        action=candidate.action,
        label=candidate.label,
        targets=list(candidate.targets),
        params=params,
        expected_saving_j=candidate.expected_saving_j,
        expected_risk=candidate.expected_risk,
        metric_before=state.metric,
        distill_steps=distill_steps,
        **_energy_fields("before", before),
    )
    trial = copy.deepcopy(state.model)
    try:
        get_action(candidate.action).apply(trial, candidate.targets, context, **params)
        if distill_steps:
            distill(
                trial,
                state.model,
                context.calls,
                steps=distill_steps,
                exclude=context.exclude,
                **distill_options,
            )
        after = measured(trial)
    except Exception as exc:  # noqa: BLE001 - any failure rejects this change, not the loop
        step.reason = f"could not apply: {type(exc).__name__}: {exc}"
        step.seconds = time.perf_counter() - started
        return step, None
    for name, value in _energy_fields("after", after).items():
        setattr(step, name, value)
    try:
        step.metric_after = float(evaluate(trial))
    except Exception as exc:
        step.reason = f"evaluate raised {type(exc).__name__}: {exc}; stopping"
        raise _Stop(step) from exc
    finally:
        step.seconds = time.perf_counter() - started
    step.accepted, step.reason = judge(before, after, step.metric_after)
    return step, ((trial, after) if step.accepted else None)


def _keep_best(trials: list[tuple[Step, tuple[nn.Module, Measurement]]], state: _State) -> bool:
    """Of the variants that passed, keep the cheapest (True); the others are marked not kept."""
    if not trials:
        return False
    best_step, (model, after) = min(trials, key=lambda t: t[1][1].energy_j)
    for step, _ in trials:
        if step is not best_step:
            step.accepted = False
            step.reason = f"passed, but {best_step.params} cost less; " + step.reason
    state.model, state.measurement = model, after
    assert best_step.metric_after is not None
    state.metric = best_step.metric_after
    return True


def _result(
    original: nn.Module,
    state: _State,
    baseline: Measurement,
    metric_0: float,
    history: list[Step],
    judge: Judge,
    measured: Callable[[nn.Module], Measurement],
) -> OptimizeResult:
    """Build the result; when something was kept, measure both models again, back to back."""
    before, after = baseline, state.measurement
    if any(step.accepted for step in history):
        # The machine's load drifts over a long loop; paired measurements compare like with like.
        before, after = measured(original), measured(state.model)
    return OptimizeResult(
        model=state.model,
        history=history,
        before=before.session,
        after=after.session,
        metric_before=metric_0,
        metric_after=state.metric,
        **_energy_fields("before", before),
        **_energy_fields("after", after),
        higher_is_better=judge.higher_is_better,
        allowed_drop=judge.allowed,
        objective=judge.objective,
        meta={
            "repeats_before": before.repeats,
            "repeats_after": after.repeats,
            "new_tokens_per_call_before": before.new_tokens,
            "new_tokens_per_call_after": after.new_tokens,
        },
    )


def _energy_fields(side: str, measurement: Measurement) -> dict[str, float]:
    """``energy_{side}_j`` and its interval, as :class:`Step` and the result name them."""
    return {
        f"energy_{side}_j": measurement.energy_j,
        f"energy_{side}_lo_j": measurement.energy_lo_j,
        f"energy_{side}_hi_j": measurement.energy_hi_j,
    }
