"""A small lazy registry with decorator registration and entry-point discovery.

Built-in and third-party plugins are found the same way: packages declare a module in the
`entrodrop_bench.regularizers` entry-point group, and importing that module runs its
`@register_regularizer` decorators. Nothing is imported until a name is first looked up.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from entrodrop_bench.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, entry_point_group: str, builtin_modules: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        # Imported even when the project is not pip-installed (no entry points), e.g. from a source tree.
        self.builtin_modules = builtin_modules
        self._items: dict[str, T] = {}
        self._origins: dict[str, str] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            origin = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"
            if name in self._items and self._origins[name] != origin:
                raise ConfigError(
                    f"{self.kind} name {name!r} is registered twice: by {self._origins[name]} and by {origin}. "
                    "Rename one of them."
                )
            self._items[name] = obj
            self._origins[name] = origin
            return obj

        return decorator

    def discover(self) -> None:
        """Import every module declared in the entry-point group (once)."""
        if self._discovered:
            return
        self._discovered = True
        for module in self.builtin_modules:
            import_module(module)
        for ep in entry_points(group=self.entry_point_group):
            ep.load()

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._items)

    def get(self, name: str, *, key_path: str = "plugin") -> T:
        self.discover()
        if name not in self._items:
            raise ConfigError(
                f"{key_path}: unknown {self.kind} {name!r}. Registered: {', '.join(self.names()) or '(none)'}. "
                f"Third-party plugins register through the {self.entry_point_group!r} entry-point group."
            )
        return self._items[name]

    def __contains__(self, name: str) -> bool:
        self.discover()
        return name in self._items
