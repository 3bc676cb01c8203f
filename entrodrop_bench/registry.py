"""A small lazy registry with decorator registration and entry-point discovery.

Built-in and third-party plugins are found the same way: packages declare a module in the
`entrodrop_bench.regularizers` entry-point group (one entry named as each plugin), and importing that module runs
its `@register_regularizer` decorators. Nothing is imported until a name is first looked up, and then only the
module of that name: a config that names three plugins imports those three, and their heavy dependencies are
imported on first use (`lazy_import`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from types import ModuleType
from typing import Generic, TypeVar

from entrodrop_bench.errors import ConfigError

T = TypeVar("T")


class _LazyModule(ModuleType):
    """Stands for a module until an attribute is first asked of it, then imports it (once) and answers from it. It
    is never put in `sys.modules`: other code importing the real module is unaffected."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str):
        if self._module is None:
            self._module = import_module(self.__name__)
        return getattr(self._module, attr)


def lazy_import(name: str) -> ModuleType:
    """The module `name`, imported on its first attribute access. Plugin modules take their heavy dependencies (torch)
    this way, so that loading a config, which imports the plugins it names to validate their params, imports none of
    them: `plan`, `config`, `status` and `benchmarks` stay fast."""
    return sys.modules.get(name) or _LazyModule(name)


@dataclass(frozen=True)
class Entry:
    """What the registry knows of a plugin before importing it: its name and the module that registers it."""

    name: str
    module: str
    """Importing it runs the plugin's registration decorator."""
    source: str
    """`built-in` or `entry point <distribution>`."""


class Registry(Generic[T]):
    """Plugins by name. Entries are known without importing anything: the built-ins from a name -> module table, the
    third-party ones from their entry points' metadata (an entry point named as its plugin). A lookup imports only
    the module of the name looked up; `discover` imports everything (listing plugins, or a name no entry names)."""

    def __init__(self, kind: str, entry_point_group: str, builtin: dict[str, str] | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        # Known even when the project is not pip-installed (no entry points), e.g. from a source tree.
        self.builtin = dict(builtin or {})
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

    def entries(self) -> dict[str, Entry]:
        """Name -> entry of every plugin known without importing one (built-ins, then entry points by name)."""
        found = {name: Entry(name, module, "built-in") for name, module in self.builtin.items()}
        for ep in entry_points(group=self.entry_point_group):
            if ep.name not in found:
                dist = getattr(ep, "dist", None)
                found[ep.name] = Entry(ep.name, ep.module, f"entry point {dist.name if dist else '?'}")
        return found

    def discover(self) -> None:
        """Import every built-in module and every module declared in the entry-point group (once)."""
        if self._discovered:
            return
        self._discovered = True
        for module in self.builtin.values():
            import_module(module)
        for ep in entry_points(group=self.entry_point_group):
            ep.load()

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._items)

    def get(self, name: str, *, key_path: str = "plugin") -> T:
        if name not in self._items and (entry := self.entries().get(name)) is not None:
            import_module(entry.module)  # only this plugin's module
        if name not in self._items:
            self.discover()  # an entry point whose name is not its plugin's
        if name not in self._items:
            raise ConfigError(
                f"{key_path}: unknown {self.kind} {name!r}. Registered: {', '.join(self.names()) or '(none)'}. "
                f"Third-party plugins register through the {self.entry_point_group!r} entry-point group."
            )
        return self._items[name]

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
        except ConfigError:
            return False
        return True
