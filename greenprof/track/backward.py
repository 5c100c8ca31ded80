"""Backward timing: the autograd-node hooks that tell when each module's backward runs.

Full module backward hooks wrap every module's inputs and outputs in extra autograd nodes; here
each module call costs at most one pre-hook on its output's ``grad_fn`` (backward starts when the
output's gradient is ready) and one hook on its first grad-requiring input (backward ends when the
input's gradient is ready). Modules that share an output node share one pre-hook. A callback queued
on the autograd engine marks the end of each backward pass (see
:func:`queue_pass_end`), closing modules whose inputs needed no gradient.

The pre-hook goes in through the tensor, as ``Tensor.register_hook`` does it, not through
``Node.register_prehook``: the tensor's ``_backward_hooks`` dict is set and handed to its node in
one call each, where ``register_prehook`` runs torch's Python registration (an ``OrderedDict``
and a ``RemovableHandle`` per node, and the node's ``metadata`` dict to find the hook again):
timed alone, 1.3 us a node against 2.8 us. The hook is found again on the tensor; an in-place
operation gives the tensor a new node and torch empties its ``_backward_hooks``, so a hook found
there always sits on the tensor's node. The hook dicts, each with its hook, are used again once
their graph is gone (:class:`HookPool`): a steady training loop allocates none, and so gives the
garbage collector nothing to count.
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from greenprof.track.events import BWD_ENTER, BWD_EXIT
from greenprof.track.tensors import first_grad_tensor

_Tensor = torch.Tensor
_getrefcount = sys.getrefcount

#: Key of greenprof's pre-hook in a tensor's ``_backward_hooks`` (torch's own keys are ints), and
#: in a node's ``metadata`` for tensors of a subclass.
HOOK_KEY = "greenprof.hook"


#: Bits of one module key in a hook's packed keys: far more modules than any process makes.
KEY_BITS = 32
KEY_MASK = (1 << KEY_BITS) - 1


class HookDict(dict):
    """A tensor's ``_backward_hooks`` when greenprof put them there.

    A dict that takes weak references: ``Tensor.register_hook`` adds the user's hooks to it later,
    with a ``RemovableHandle`` that holds it weakly.
    """

    __slots__ = ("__weakref__",)


def _free_refs() -> int:
    """References to a dict that only a list and a local name hold, as :meth:`HookPool.take` counts.

    Counted once, here: the figure depends on how the interpreter counts a call's own references.
    """
    dicts = [HookDict()]
    hooks = dicts[0]
    return _getrefcount(hooks)


_FREE_REFS = _free_refs()
#: Without a GIL, counts of references can be deferred: a dict would look free while in use.
_POOLED = getattr(sys, "_is_gil_enabled", lambda: True)()


class HookPool:
    """Hook dicts, each with its :class:`NodeHook`, used again once no tensor or node holds them.

    A training step keeps a hook dict and a hook alive for each hooked node until its graph is
    freed; allocated anew each step, they are two new objects a module call for the garbage
    collector's count, which runs a collection once 700 are new. Taken from here, they are old
    objects: a steady loop allocates none. A dict is free when the pool's is its only reference:
    the tensor it was put on and the node's pre-hook, which hold it, are gone.
    """

    #: Dicts looked at for a free one before a new one is made. They are taken in turn, so past
    #: the graphs a loop keeps alive (the last step's, held by its loss) the next one is free.
    SCAN = 8
    #: Dicts kept at most. Walking past the dicts of a graph that is kept alive makes a few new
    #: ones each time; past this many, those are not kept.
    LIMIT = 1 << 12

    __slots__ = ("_dicts", "_next")

    def __init__(self) -> None:
        self._dicts: list[HookDict] = []
        self._next = 0

    def take(self, recorder: Any) -> HookDict:
        """A hook dict that holds only a fresh hook of ``recorder``'s, from the pool if one is free.

        Every hook in a pool is ``recorder``'s: a recorder has a pool of its own.
        """
        # In a steady loop the next dict is free, and its tensor had no hook of the user's.
        dicts, i = self._dicts, self._next
        if i < len(dicts):
            # Held by a name before it is counted: another thread that looks at the same dict
            # meanwhile counts this reference, so that one thread at most takes it.
            hooks = dicts[i]
            if _getrefcount(hooks) == _FREE_REFS and len(hooks) == 1:
                self._next = i + 1
                hook = hooks[HOOK_KEY]
                hook.starts = hook.ends = 0
                return hooks
        return self._take_further(recorder)

    def _take_further(self, recorder: Any) -> HookDict:
        dicts = self._dicts
        size = len(dicts)
        i = self._next
        if i >= size:
            # Round the ring: its start is free once the graph made there is gone. Where it is
            # not, all dicts are in use (the first steps): the ring grows, looking no further.
            i, scan = 0, 1
        else:
            scan = self.SCAN  # a graph kept alive holds these: look past its dicts
        for _ in range(min(size - i, scan)):
            hooks = dicts[i]  # named before it is counted, as in take()
            i += 1
            if _getrefcount(hooks) == _FREE_REFS:
                self._next = i
                hook = hooks[HOOK_KEY]
                if len(hooks) != 1:  # the user's hooks, put on the tensor it was last on
                    hooks.clear()
                    hooks[HOOK_KEY] = hook
                hook.starts = hook.ends = 0
                return hooks
        hooks = HookDict(((HOOK_KEY, NodeHook(recorder)),))
        if size < self.LIMIT and _POOLED:
            dicts.append(hooks)
        self._next = len(dicts) if scan == 1 else i
        return hooks


# ``recorder`` is a :class:`~.hooks.HookRecorder`; typed ``Any`` so that this module, which the
# recorder imports, does not import it back.
def hook_backward(
    recorder: Any, key: int, args: Any, kwargs: Any, out: torch.Tensor, node: Any
) -> None:
    """Time the backward of module ``key`` whose output ``out`` was made by autograd node ``node``.

    Args:
        recorder: the recorder the events go to.
        key: the module's key.
        args: the module's positional inputs.
        kwargs: the module's keyword inputs (searched when no positional one needs a gradient).
        out: the output tensor autograd reaches first.
        node: ``out.grad_fn``.
    """
    # The node hooked last: in a chain, this module's input node; for a container, its output
    # node (that of its last child). Found here, it needs no lookup on the tensor.
    last_node, last_hook = recorder.last_node, recorder.last_hook
    hook = last_hook if node is last_node else node_hook(recorder, out, node)
    hook.starts = hook.starts << KEY_BITS | (key + 1)
    recorder.last_node, recorder.last_hook = node, hook
    inp = args[0] if args else None
    if type(inp) is not _Tensor or not inp.requires_grad:
        inp = first_grad_tensor(args)
        if inp is None and kwargs:
            inp = first_grad_tensor(kwargs)
    source = None if inp is None or inp is out else inp.grad_fn
    if source is None:
        # No input made by the graph (none needs a gradient, it is a leaf such as a parameter,
        # or it was modified in place): backward ends with the output's node, exact for
        # single-operation modules such as Embedding. Never hook a leaf: it outlives the
        # step, and its hooks would pile up.
        node.register_hook(BackwardEnd(recorder, key))
        return
    # Backward ends when the node that made the input is about to run: in a chain that is
    # the node where the previous module's backward starts, so one hook serves both.
    hook = last_hook if source is last_node else node_hook(recorder, inp, source)
    ends = hook.ends
    if not ends or key not in unpacked(ends):  # a recompute meets its first call's
        hook.ends = ends << KEY_BITS | (key + 1)


def hook_output_backward(recorder: Any, key: int, args: Any, kwargs: Any, output: Any) -> None:
    """Time the backward of module ``key`` from its inputs and output, where autograd made one."""
    out = output if type(output) is _Tensor else first_grad_tensor(output)
    node = None if out is None else out.grad_fn
    if node is not None:
        hook_backward(recorder, key, args, kwargs, out, node)


def node_hook(recorder: Any, tensor: torch.Tensor, node: Any) -> NodeHook:
    """The one pre-hook greenprof keeps on ``node``, ``tensor.grad_fn`` (made on first use)."""
    if type(tensor) is _Tensor:
        hooks = tensor._backward_hooks
        if hooks is None:
            hooks = tensor._backward_hooks = recorder.hook_pool.take(recorder)
            node._register_hook_dict(tensor)
            return hooks[HOOK_KEY]
        # The user's hooks on this tensor: torch calls every hook in the dict, ours too.
        hook = hooks.get(HOOK_KEY)
        if hook is None:
            hook = hooks[HOOK_KEY] = NodeHook(recorder)
            return hook
    else:
        # A tensor subclass may answer attribute reads through __torch_function__: the node's.
        metadata = node.metadata
        hook = metadata.get(HOOK_KEY)
        if hook is None:
            hook = metadata[HOOK_KEY] = NodeHook(recorder)
            node.register_prehook(hook)
            return hook
    if hook.recorder is not recorder:
        # A node of a graph built during an earlier profile: its hook now serves this one.
        hook.recorder, hook.starts, hook.ends = recorder, 0, 0
    return hook


def unpacked(packed: int) -> list[int]:
    """The keys in an int of :attr:`NodeHook.starts` or ``ends``, the last one added first.

    Each key ``k`` takes :data:`KEY_BITS` bits as ``k + 1``, so that key 0 is told from none.
    """
    keys = []
    while packed:
        keys.append((packed & KEY_MASK) - 1)
        packed >>= KEY_BITS
    return keys


class NodeHook:
    """Pre-hook on an autograd node: modules whose input it made end, modules it outputs start.

    The keys of each kind are packed into one int (see :func:`unpacked`), 0 for none: an int is
    no object the garbage collector tracks, where a training step keeps one hook a module call
    alive until its backward ran, and the collector runs once 700 tracked objects are new.
    """

    __slots__ = ("recorder", "starts", "ends")
    #: A tensor that is saved or sent to another process keeps no hooks; torch warns of hooks
    #: that do not say so.
    __torch_unserializable__ = True

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder
        self.starts = 0
        self.ends = 0

    def __call__(self, grad: Any) -> None:
        """Record the ends and starts this node stands for (autograd calls it before the node).

        Args:
            grad: the gradient of the tensor the hook went in through (a node pre-hook, used for
                tensor subclasses, gets all of the node's output gradients); unchanged.
        """
        recorder = self.recorder
        if not recorder.live:  # a graph that outlived its profile
            return
        try:
            t_ns = recorder._clock()
            # Starts come outermost first (the last one added), so that the innermost one ends up
            # on top of the stack; ends at one instant may come in any order.
            ends, starts = self.ends, self.starts
            if recorder.cuda is None:
                put = recorder._put
                while ends:
                    put(t_ns)
                    put(BWD_EXIT)
                    put((ends & KEY_MASK) - 1)
                    ends >>= KEY_BITS
                while starts:
                    put(t_ns)
                    put(BWD_ENTER)
                    put((starts & KEY_MASK) - 1)
                    starts >>= KEY_BITS
            else:
                for key in unpacked(ends):
                    recorder._emit(BWD_EXIT, key, t_ns)
                for key in unpacked(starts):
                    recorder._emit(BWD_ENTER, key, t_ns)
            if self.starts and not recorder._in_backward:
                queue_pass_end(recorder)
        except Exception:
            recorder._fault("backward hook")


class BackwardEnd:
    """Post-hook on an autograd node where one module's backward ends (its output's node ran)."""

    __slots__ = ("recorder", "key")

    def __init__(self, recorder: Any, key: int) -> None:
        self.recorder = recorder
        self.key = key

    def __call__(self, grad_inputs: Any, grad_outputs: Any) -> None:
        """Record the module's backward end (autograd calls it after the node ran)."""
        if not self.recorder.live:
            return
        try:
            self.recorder._emit(BWD_EXIT, self.key)
        except Exception:
            self.recorder._fault("backward hook")


def queue_pass_end(recorder: Any) -> None:
    """Have the autograd engine call the recorder back when the running backward pass ends."""
    recorder._in_backward = True
    try:
        torch.autograd.Variable._execution_engine.queue_callback(recorder._backward_pass_end)
    except RuntimeError:
        recorder._in_backward = False
