"""Loading plugins and calling their hooks so that one broken plugin never stops the rest.

Plugins are found through the `catalogcap` entry-point group (plus the built-in ones,
registered the same way). A hook implementation that raises is logged with the plugin's
name and counted in `failures`; the other plugins still run and the caller carries on.
"""

from __future__ import annotations

import fnmatch
import importlib
import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import Distribution, entry_points
from typing import Any

import pluggy

from catalogcap import redact
from catalogcap.plugins import hookspecs

log = logging.getLogger("catalogcap.plugins")
failures: Counter[str] = Counter()
last_errors: dict[str, str] = {}
BUILTIN_MODULES = ("catalogcap.plugins.builtin",)
SLOW_SECONDS = 0.5
EXPORTER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


@dataclass(frozen=True)
class Exporter:
    name: str
    fn: Callable[..., dict[str, Any]]
    description: str
    plugin: str


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus what `plugins list` reports about plugins that did not load."""

    def __init__(self) -> None:
        super().__init__("catalogcap")
        self.add_hookspecs(hookspecs)
        self.skipped: dict[str, Distribution | None] = {}  # installed, not allowed by the setting
        self.broken: dict[str, str] = {}  # failed to import: the error
        self.dists: dict[str, Distribution | None] = {}


def allowed(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def make_manager(enabled: list[str] | None = None) -> PluginManager:
    """A plugin manager with the built-ins and every installed plugin allowed by `enabled` (globs)."""
    enabled = ["*"] if enabled is None else enabled
    pm = PluginManager()
    for module_name in BUILTIN_MODULES:
        name = module_name.rsplit(".", 1)[-1]
        if allowed(name, enabled):
            pm.register(importlib.import_module(module_name), name=name)
        else:
            pm.skipped[name] = None
    for ep in entry_points(group="catalogcap"):
        if pm.has_plugin(ep.name) or ep.name in pm.broken:
            continue
        if not allowed(ep.name, enabled):
            pm.skipped[ep.name] = ep.dist
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:
            failures[ep.name] += 1
            pm.broken[ep.name] = last_errors[ep.name] = f"{type(exc).__name__}: {redact.text(str(exc))}"
            log.error("plugin %s (%s) could not be loaded: %s", ep.name, ep.value, pm.broken[ep.name])
            continue
        pm.dists[ep.name] = ep.dist
    return pm


def record_failure(plugin: str, hook_name: str, exc: BaseException) -> None:
    failures[plugin] += 1
    message = redact.text(str(exc))  # a client error message may carry a URL with its password
    last_errors[plugin] = f"{hook_name}: {type(exc).__name__}: {message}"
    log.error("plugin %s failed in %s: %s: %s", plugin, hook_name, type(exc).__name__, message,
              exc_info=log.isEnabledFor(logging.DEBUG))


def call_safely(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> list[Any]:
    """Call every implementation of a hook, isolating failures; returns the results.

    An implementation gets the arguments it names (a missing one is None) and is timed:
    one that holds the caller's thread longer than SLOW_SECONDS is logged as slow."""
    hook = getattr(pm.hook, hook_name)
    results = []
    for impl in reversed(hook.get_hookimpls()):
        if impl.hookwrapper or impl.wrapper:
            continue
        started = time.monotonic()
        try:
            result = impl.function(*[kwargs.get(arg) for arg in impl.argnames])
        except Exception as exc:
            record_failure(impl.plugin_name, hook_name, exc)
            continue
        finally:
            elapsed = time.monotonic() - started
            if elapsed > SLOW_SECONDS:
                log.warning("plugin %s took %.1fs in %s; hooks must return quickly (use a thread or outbox)",
                            impl.plugin_name, elapsed, hook_name)
        if result is not None:
            results.append(result)
    return results


def exporters(pm: pluggy.PluginManager) -> dict[str, Exporter]:
    """Every registered exporter by name (built-ins first; a later plugin may replace one, with a warning)."""
    found: dict[str, Exporter] = {}
    for impl in reversed(pm.hook.register_exporters.get_hookimpls()):
        def register(name: str, fn: Callable[..., dict[str, Any]], description: str = "",
                     _plugin: str = impl.plugin_name) -> None:
            if not EXPORTER_NAME.match(name) or not callable(fn):
                raise ValueError(f"exporter name {name!r} must be lower-case letters, digits, - or _,"
                                 " and its function callable")
            if name in found:
                log.warning("exporter %s of plugin %s replaces the one of plugin %s", name, _plugin,
                            found[name].plugin)
            found[name] = Exporter(name, fn, description, _plugin)

        try:
            impl.function(register)
        except Exception as exc:
            record_failure(impl.plugin_name, "register_exporters", exc)
    return found


def describe(pm: PluginManager) -> list[dict[str, Any]]:
    """Installed plugins with versions, hooks, exporters and failures (for `plugins list`)."""
    from catalogcap.plugins.config import settings_docs, settings_models

    by_plugin: dict[str, list[str]] = {}
    for exporter in exporters(pm).values():
        by_plugin.setdefault(exporter.plugin, []).append(exporter.name)
    sections: dict[str, dict[str, Any]] = {}
    for section, (model, plugin) in settings_models(pm).items():
        sections.setdefault(plugin, {})[section] = settings_docs(model)
    items = []
    for name, plugin in pm.list_name_plugin():
        items.append(_item(name, pm.dists.get(name), "loaded", hooks=sorted(
            h.name for h in pm.get_hookcallers(plugin) or []), exporters=sorted(by_plugin.get(name, [])),
            settings=sections.get(name, {})))
    for name, dist in pm.skipped.items():
        items.append(_item(name, dist, "disabled", error="not allowed by the `plugins` setting"))
    for name, error in pm.broken.items():
        items.append(_item(name, None, "broken", error=error))
    return sorted(items, key=lambda item: item["name"])


def _item(name: str, dist: Distribution | None, status: str, **extra: Any) -> dict[str, Any]:
    builtin = name in {m.rsplit(".", 1)[-1] for m in BUILTIN_MODULES} and dist is None
    data = {
        "name": name,
        "status": status,
        "package": dist.metadata["Name"] if dist else "catalogcap",
        "version": dist.version if dist else own_version(),
        "builtin": builtin,
        "hooks": [],
        "exporters": [],
        "settings": {},
        "failures": failures.get(name, 0),
        "last_error": last_errors.get(name),
    }
    data.update(extra)
    return data


def own_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("catalogcap")
    except PackageNotFoundError:
        import catalogcap

        return getattr(catalogcap, "__version__", "dev")
