"""What counts as a step of the profiled program.

A step is an optimizer step. A run without an optimizer (manual SGD, as in a loop that updates
``p.data`` itself) steps once per backward pass. A run without backward (evaluation, inference)
steps once per call of its main model: the root model whose calls took the most forward time,
so that a loss module called as a root after the model (``criterion(model(x), y)``) is never
counted as a step of its own.
"""

from __future__ import annotations


class StepCount:
    """Counts optimizer steps, backward passes and root model calls as the timeline meets them.

    Example:
        >>> count = StepCount()
        >>> count.root_call(0, 900)  # the model
        >>> count.root_call(5, 100)  # its loss module, a root of its own
        >>> count.steps
        1
        >>> count.backward_pass()
        >>> count.backward_pass()
        >>> count.steps
        2
    """

    __slots__ = ("optimizer_steps", "backward_passes", "_calls", "_forward_ns")

    def __init__(self) -> None:
        self.optimizer_steps = 0
        self.backward_passes = 0
        self._calls: dict[int, int] = {}  # root key -> outermost calls
        self._forward_ns: dict[int, int] = {}  # root key -> forward time of those calls

    def root_call(self, key: int, forward_ns: int) -> None:
        """An outermost forward call of root ``key`` ended after ``forward_ns`` nanoseconds."""
        self._calls[key] = self._calls.get(key, 0) + 1
        self._forward_ns[key] = self._forward_ns.get(key, 0) + forward_ns

    def backward_pass(self) -> None:
        """A backward pass ended."""
        self.backward_passes += 1

    def optimizer_step(self) -> None:
        """An optimizer step ended."""
        self.optimizer_steps += 1

    @property
    def main_root(self) -> int | None:
        """Key of the root model whose calls took the most forward time (None before any)."""
        if not self._forward_ns:
            return None
        return max(self._forward_ns, key=self._forward_ns.__getitem__)

    @property
    def steps(self) -> int:
        """Optimizer steps; else backward passes; else calls of the main model."""
        if self.optimizer_steps or self.backward_passes:
            return self.optimizer_steps or self.backward_passes
        main = self.main_root
        return 0 if main is None else self._calls[main]
