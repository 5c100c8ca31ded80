"""Keys and qualified names of the modules and optimizers greenprof has seen.

A key is a small int, cheap to store per event; :class:`KeyInfo` holds what a key stands for.
Names are those ``named_modules()`` gives from the outermost module called. Objects are held by weak
reference only, so the registry never keeps a model alive; a model rebuilt every step takes over
the keys of a dead one of the same class.

A ``torch.compile``-d module (an ``OptimizedModule``) shares the key of the module it wraps: its
row has the user's name and class, and ``_orig_mod`` appears in no name.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class KeyInfo:
    """What greenprof knows of one hooked module or optimizer."""

    name: str
    type_name: str
    root: int
    is_optimizer: bool = False
    alive: Any = field(default=None, repr=False)  # weakref keeping the id map honest


class KeyRegistry:
    """Keys of modules and optimizers, by object id.

    Attributes:
        keys: what each key stands for, indexed by key.
        ids: key of each live object, by ``id()`` (the hooks read this on every call).
    """

    def __init__(self) -> None:
        self.keys: list[KeyInfo] = []
        self.ids: dict[int, int] = {}
        self._root_names: dict[int, dict[str, int]] = {}
        self.compiled: list[str] = []  # names of the compiled modules seen (keys of their roots)
        self._alias_refs: list[Any] = []  # weakrefs of objects sharing another object's key
        self._compiled_keys: set[int] = set()
        #: ids of the modules that get no row: graphs ``torch.compile`` calls inside the module
        #: it compiled (they are the compiled module's insides).
        self.skipped: dict[int, Any] = {}

    def register(self, obj: Any, stack_keys: list[int], current_root: int) -> int | None:
        """Give ``obj`` (a module or optimizer seen for the first time) a key, and return it.

        None means that ``obj`` gets no row (see :attr:`skipped`).

        Args:
            obj: the module or optimizer.
            stack_keys: keys of the modules running now, outermost first.
            current_root: key of the root model now running, ``-1`` when none.
        """
        if isinstance(obj, torch.optim.Optimizer):
            same_type = sum(
                1 for k in self.keys if k.is_optimizer and k.type_name == type(obj).__name__
            )
            suffix = f"#{same_type + 1}" if same_type else ""
            info = KeyInfo(f"optimizer:{type(obj).__name__}{suffix}", type(obj).__name__, -1, True)
            return self._add_key(obj, info)
        if isinstance(obj, torch.fx.GraphModule) and self._compiled_keys.intersection(stack_keys):
            self._skip(obj)  # a graph torch.compile runs: its time is its compiled module's
            return None
        wrapped = self.ids.get(id(_unwrap(obj)))
        if wrapped is not None:  # a module seen before, compiled since: same key, same row
            self._bind(obj, wrapped, alias=True)
            self._note_compiled(obj, wrapped)
            return wrapped
        if not stack_keys:
            return self._register_root(obj)
        # Called inside another module but not part of its tree: built or attached at run time
        # (e.g. a loss module made in every forward). One key per name, however many objects.
        parent = self.keys[stack_keys[-1]].name
        type_name = _type_name(obj)
        name = f"{parent}.{type_name}" if parent else type_name
        names = self._root_names.setdefault(current_root, {})
        key = names.get(name)
        if key is not None and self.keys[key].type_name == type_name:
            self._bind(obj, key)
        else:
            key = self._add_key(obj, KeyInfo(name, type_name, current_root))
            names[name] = key
        self._note_compiled(obj, key)
        return key

    def _register_root(self, root: torch.nn.Module) -> int:
        # A model rebuilt every step (a loss module, a model made in a loop) takes over the keys
        # of a dead one of the same class, so keys and columns stay O(modules), not O(steps).
        reuse = self._dead_root_names(_type_name(root))
        root_key = reuse.get("", len(self.keys))
        names: dict[str, int] = {}
        for qualified, sub in root.named_modules(remove_duplicate=True):
            name = _user_name(qualified)
            if name in names and qualified != name:
                # The module a compiled one wraps: one key, so its name has no ``_orig_mod``.
                self._bind(sub, names[name], alias=True)
                continue
            existing = self.ids.get(id(sub))
            if existing is not None:
                # A module first seen as a root of its own is now part of a bigger model.
                old = self.keys[existing]
                if old.root == existing or self.keys[old.root].root == existing:
                    old.name, old.root = name, root_key
                names[name] = existing
                continue
            key = reuse.get(name)
            if key is not None and self.keys[key].type_name == _type_name(sub):
                self._bind(sub, key)
            else:
                key = self._add_key(sub, KeyInfo(name, _type_name(sub), root_key))
            names[name] = key
            self._note_compiled(sub, key)
        self._root_names[root_key] = names
        return self.ids[id(root)]

    def _dead_root_names(self, type_name: str) -> dict[str, int]:
        for root_key, names in self._root_names.items():
            info = self.keys[root_key]
            if info.type_name == type_name and info.alive is not None and info.alive() is None:
                del self._root_names[root_key]
                return names
        return {}

    def _add_key(self, obj: Any, info: KeyInfo) -> int:
        self.keys.append(info)
        key = len(self.keys) - 1
        self._bind(obj, key)
        return key

    def _skip(self, obj: Any) -> None:
        object_id = id(obj)
        skipped = self.skipped

        def forget(_ref: object, object_id: int = object_id) -> None:
            skipped.pop(object_id, None)

        skipped[object_id] = weakref.ref(obj, forget)

    def _note_compiled(self, obj: Any, key: int) -> None:
        if _is_compiled(obj) and key not in self._compiled_keys:
            self._compiled_keys.add(key)
            self.compiled.append(self.keys[key].name)

    def _bind(self, obj: Any, key: int, *, alias: bool = False) -> None:
        """Map ``obj`` to ``key``; an alias shares the key of the object the key stands for."""
        object_id = id(obj)
        ids = self.ids

        def forget(_ref: object, object_id: int = object_id, key: int = key) -> None:
            # The object is gone; its id may be reused by a new object, which needs a new key.
            if ids.get(object_id) == key:
                del ids[object_id]

        try:
            ref = weakref.ref(obj, forget)
        except TypeError:  # not weak-referenceable; keep the key for the session's lifetime
            ref = None
        if alias:
            self._alias_refs.append(ref)  # kept so that its callback runs
        else:
            self.keys[key].alive = ref
        ids[object_id] = key


#: Type name of the wrapper ``torch.compile(module)`` returns; it holds the module as ``_orig_mod``.
_COMPILED = "OptimizedModule"
_WRAPPED = "_orig_mod"


def _unwrap(obj: Any) -> Any:
    """The module a compiled module wraps (``obj`` itself for any other object)."""
    while type(obj).__name__ == _COMPILED and isinstance(
        getattr(obj, _WRAPPED, None), torch.nn.Module
    ):
        obj = getattr(obj, _WRAPPED)
    return obj


def _is_compiled(obj: Any) -> bool:
    """True for a module ``torch.compile`` compiles: its insides run as a graph, without hooks."""
    if getattr(obj, "_compiled_call_impl", None) is not None:  # ``module.compile()``
        return True
    # ``torch.compiler.disable(module)`` returns the same wrapper, running the module eagerly.
    context = type(getattr(obj, "dynamo_ctx", None)).__name__
    return type(obj).__name__ == _COMPILED and context != "DisableContext"


def _type_name(obj: Any) -> str:
    """The class name of ``obj``, or of the module it wraps when it is a compiled module."""
    return type(_unwrap(obj)).__name__


def _user_name(qualified: str) -> str:
    """A qualified module name without the ``_orig_mod`` parts ``torch.compile`` adds."""
    if _WRAPPED not in qualified:
        return qualified
    return ".".join(part for part in qualified.split(".") if part != _WRAPPED)
