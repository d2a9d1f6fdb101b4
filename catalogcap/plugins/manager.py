"""Loading plugins and calling their hooks so that one broken plugin never stops the rest.

Plugins are found through the `catalogcap` entry-point group (plus the built-in ones,
registered the same way). A hook implementation that raises is logged with the plugin's
name and counted in `failures`; the other plugins still run and the caller carries on.
"""

from __future__ import annotations

import fnmatch
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pluggy

from catalogcap.plugins import hookspecs

log = logging.getLogger("catalogcap.plugins")
failures: Counter[str] = Counter()
BUILTIN_MODULES = ("catalogcap.plugins.builtin",)


@dataclass(frozen=True)
class Exporter:
    name: str
    fn: Callable[..., dict[str, Any]]
    description: str
    plugin: str


def _allowed(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def make_manager(enabled: list[str] | None = None) -> pluggy.PluginManager:
    """A plugin manager with the built-ins and every installed plugin allowed by `enabled` (globs)."""
    import importlib

    enabled = ["*"] if enabled is None else enabled
    pm = pluggy.PluginManager("catalogcap")
    pm.add_hookspecs(hookspecs)
    for module_name in BUILTIN_MODULES:
        name = module_name.rsplit(".", 1)[-1]
        if _allowed(name, enabled):
            pm.register(importlib.import_module(module_name), name=name)
    from importlib.metadata import entry_points

    for ep in entry_points(group="catalogcap"):
        if not _allowed(ep.name, enabled) or pm.has_plugin(ep.name):
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:
            failures[ep.name] += 1
            log.error("plugin %s could not be loaded: %s: %s", ep.name, type(exc).__name__, exc)
    return pm


def call_safely(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> list[Any]:
    """Call every implementation of a hook, isolating failures; returns the results."""
    hook = getattr(pm.hook, hook_name)
    results = []
    for impl in reversed(hook.get_hookimpls()):
        try:
            result = impl.function(*[kwargs[arg] for arg in impl.argnames])
        except Exception as exc:
            failures[impl.plugin_name] += 1
            log.error("plugin %s failed in %s: %s: %s", impl.plugin_name, hook_name, type(exc).__name__, exc,
                      exc_info=log.isEnabledFor(logging.DEBUG))
            continue
        if result is not None:
            results.append(result)
    return results


def exporters(pm: pluggy.PluginManager) -> dict[str, Exporter]:
    found: dict[str, Exporter] = {}
    for impl in reversed(pm.hook.register_exporters.get_hookimpls()):
        def register(name: str, fn: Callable[..., dict[str, Any]], description: str = "",
                     _plugin: str = impl.plugin_name) -> None:
            found[name] = Exporter(name, fn, description, _plugin)

        try:
            impl.function(register)
        except Exception as exc:
            failures[impl.plugin_name] += 1
            log.error("plugin %s failed in register_exporters: %s", impl.plugin_name, exc)
    return found


def describe(pm: pluggy.PluginManager) -> list[dict[str, Any]]:
    """Installed plugins with versions and the hooks they implement (for `plugins list`)."""
    from importlib.metadata import entry_points

    dists = {ep.name: ep.dist for ep in entry_points(group="catalogcap")}
    items = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        dist = dists.get(name)
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        items.append({
            "name": name,
            "package": dist.metadata["Name"] if dist else "catalogcap",
            "version": dist.version if dist else _own_version(),
            "builtin": dist is None,
            "hooks": hooks,
            "failures": failures.get(name, 0),
        })
    return items


def _own_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("catalogcap")
    except PackageNotFoundError:
        return "dev"
