"""Keys and qualified names of the modules and optimizers greenprof has seen.

A key is a small int, cheap to store per event; :class:`KeyInfo` holds what a key stands for.
Names are those ``named_modules()`` gives from the outermost module called. Objects are held by weak
reference only, so the registry never keeps a model alive; a model rebuilt every step takes over
the keys of a dead one of the same class.
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

    def register(self, obj: Any, stack_keys: list[int], current_root: int) -> int:
        """Give ``obj`` (a module or optimizer seen for the first time) a key, and return it.

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
        if not stack_keys:
            return self._register_root(obj)
        # Called inside another module but not part of its tree: built or attached at run time
        # (e.g. a loss module made in every forward). One key per name, however many objects.
        parent = self.keys[stack_keys[-1]].name
        name = f"{parent}.{type(obj).__name__}" if parent else type(obj).__name__
        names = self._root_names.setdefault(current_root, {})
        key = names.get(name)
        if key is not None and self.keys[key].type_name == type(obj).__name__:
            self._bind(obj, key)
            return key
        key = self._add_key(obj, KeyInfo(name, type(obj).__name__, current_root))
        names[name] = key
        return key

    def _register_root(self, root: torch.nn.Module) -> int:
        # A model rebuilt every step (a loss module, a model made in a loop) takes over the keys
        # of a dead one of the same class, so keys and columns stay O(modules), not O(steps).
        reuse = self._dead_root_names(type(root).__name__)
        root_key = reuse.get("", len(self.keys))
        names: dict[str, int] = {}
        for name, sub in root.named_modules(remove_duplicate=True):
            existing = self.ids.get(id(sub))
            if existing is not None:
                # A module first seen as a root of its own is now part of a bigger model.
                old = self.keys[existing]
                if old.root == existing or self.keys[old.root].root == existing:
                    old.name, old.root = name, root_key
                names[name] = existing
                continue
            key = reuse.get(name)
            if key is not None and self.keys[key].type_name == type(sub).__name__:
                self._bind(sub, key)
            else:
                key = self._add_key(sub, KeyInfo(name, type(sub).__name__, root_key))
            names[name] = key
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

    def _bind(self, obj: Any, key: int) -> None:
        object_id = id(obj)
        ids = self.ids

        def forget(_ref: object, object_id: int = object_id, key: int = key) -> None:
            # The object is gone; its id may be reused by a new object, which needs a new key.
            if ids.get(object_id) == key:
                del ids[object_id]

        try:
            self.keys[key].alive = weakref.ref(obj, forget)
        except TypeError:  # not weak-referenceable; keep the key for the session's lifetime
            self.keys[key].alive = None
        ids[object_id] = key
