"""Recommend, apply and prove: from a profile's hottest layers to a cheaper model.

* :func:`recommend` ranks candidate changes for a session (and, optionally, the model).
* :mod:`greenprof.recommend.actions` applies them, one small module per technique.
* :func:`optimize` applies them one at a time to copies, re-profiles the same workload and keeps
  only the changes that save joules beyond the measurement's uncertainty without losing more of
  the user's metric than allowed.

Example:
    >>> import greenprof
    >>> result = greenprof.optimize(  # doctest: +SKIP
    ...     model, workload, evaluate, max_metric_drop=0.01
    ... )
"""

from greenprof.optimize_result import OptimizeResult, Step
from greenprof.recommend.candidates import Candidate
from greenprof.recommend.loop import optimize
from greenprof.recommend.rules import recommend

__all__ = ["Candidate", "OptimizeResult", "Step", "optimize", "recommend"]
