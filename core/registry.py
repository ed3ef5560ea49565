"""Plugin manager and registries.

One registry per registration hook of ``core/hookspecs.py``; each object is checked
against its interface (``core/interfaces.py``) when it is registered.

Plugins come from setuptools entry points (group ``serumrnn``) and then the built-in
hookimpl modules in ``DEFAULT_PLUGINS``. ``SERUMRNN_LOAD_PLUGINS`` (comma-separated
allow-list of plugin names) and ``SERUMRNN_DISABLE_PLUGINS`` (block-list) filter both.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

import pluggy

from serumrnn.core import hookspecs
from serumrnn.core.errors import PluginError
from serumrnn.core.interfaces import Effect, RackSpec, Selector, Synth

DEFAULT_PLUGINS: tuple[str, ...] = ("serumrnn.plugins.builtin", "serumrnn.plugins.toml_rack")

T = TypeVar("T")


class Registry(Generic[T]):
    """Named objects of one kind, in registration order; ``interface``: the type every
    object must be an instance of (None: any object with a name)."""

    def __init__(self, kind: str, interface: type | None = None) -> None:
        self.kind = kind
        self.interface = interface
        self._items: dict[str, T] = {}
        self._owners: dict[str, str] = {}

    def register(self, item: T, *, owner: str = "") -> None:
        name = getattr(item, "name", "")
        if not isinstance(name, str) or not name:
            raise PluginError(f"Plugin {owner or '?'} registered a {self.kind} without a name.")
        if self.interface is not None and not isinstance(item, self.interface):
            raise PluginError(
                f"Plugin {owner or '?'} registered {self.kind} {name!r}, which is not a {self.interface.__name__}; "
                "see docs/plugins.md for what it must provide."
            )
        if name in self._items:
            raise PluginError(
                f"Plugin {owner or '?'} registered {self.kind} {name!r}, which plugin "
                f"{self._owners[name] or '?'} already registered; rename one of them."
            )
        self._items[name] = item
        self._owners[name] = owner

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(self._items) or "none"
            raise PluginError(f"Unknown {self.kind} {name!r}; known: {known}.") from None

    def owner(self, name: str) -> str:
        return self._owners[name]

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)


def _env_list(name: str) -> set[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


class PluginManager:
    """Loads plugins and fills one registry per registration hook."""

    def __init__(self, *, load_entrypoints: bool = True, extra_plugins: tuple[Any, ...] = ()) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        allow = _env_list("SERUMRNN_LOAD_PLUGINS")
        block = _env_list("SERUMRNN_DISABLE_PLUGINS") or set()

        def wanted(name: str) -> bool:
            return (allow is None or name in allow) and name not in block

        if load_entrypoints:
            for dist_ep in importlib.metadata.entry_points(group=hookspecs.PROJECT_NAME):
                if not wanted(dist_ep.name) or self.pm.get_plugin(dist_ep.name) is not None:
                    continue
                try:
                    module = dist_ep.load()
                except Exception as exc:  # a broken third-party plugin must not kill the tool
                    raise PluginError(
                        f"Plugin {dist_ep.name!r} ({dist_ep.value}) failed to load: {exc}; "
                        "fix or uninstall it, or block it with SERUMRNN_DISABLE_PLUGINS."
                    ) from None
                self.pm.register(module, name=dist_ep.name)
        for module_name in DEFAULT_PLUGINS:
            if wanted(module_name) and self.pm.get_plugin(module_name) is None:
                self.pm.register(importlib.import_module(module_name), name=module_name)
        for plugin in extra_plugins:
            self.pm.register(plugin)
        self.pm.check_pending()

        self.synths: Registry[Synth] = self._collect("synth", "serumrnn_register_synths", Synth)
        self.effects: Registry[Effect] = self._collect("effect", "serumrnn_register_effects", Effect)
        self.selectors: Registry[Selector] = self._collect("selector", "serumrnn_register_selectors", Selector)
        self.racks: Registry[RackSpec] = self._collect("rack", "serumrnn_register_racks", RackSpec)

    def _collect(self, kind: str, hook_name: str, interface: type) -> Registry:
        registry: Registry = Registry(kind, interface)
        caller = getattr(self.pm.hook, hook_name)
        impls = caller.get_hookimpls()
        # built-ins first, then third-party plugins in registration order
        impls = sorted(impls, key=lambda impl: impl.plugin_name not in DEFAULT_PLUGINS)
        for impl in impls:
            owner = impl.plugin_name
            impl.function(register=lambda item, _owner=owner: registry.register(item, owner=_owner))
        return registry

    def plugin_names(self) -> list[str]:
        return [name for name, _ in self.pm.list_name_plugin()]

    def plugin_contributions(self) -> dict[str, dict[str, list[str]]]:
        """Plugin name -> kind -> names it registered."""
        out: dict[str, dict[str, list[str]]] = {name: {} for name in self.plugin_names()}
        for registry in (self.synths, self.effects, self.selectors, self.racks):
            for name in registry.names():
                out.setdefault(registry.owner(name), {}).setdefault(registry.kind, []).append(name)
        return out

    def rack(self, name: str):
        """Build (once) and return the rack ``name``."""
        cache = self.__dict__.setdefault("_racks", {})
        if name not in cache:
            spec = self.racks.get(name)
            cache[name] = spec.build(self)
        return cache[name]


_default_manager: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, loaded on first use."""
    global _default_manager
    if _default_manager is None:
        _default_manager = PluginManager()
    return _default_manager


def reset_plugin_manager() -> None:
    """Forget the process-wide manager (tests, or after env var changes)."""
    global _default_manager
    _default_manager = None
