"""Loading plugins and calling their hooks so that one broken plugin never stops the rest.

Plugins are found through the `catalogcap` entry-point group (plus the built-in ones,
registered the same way). Each plugin's implementation is called through pluggy's own
hook caller, one plugin at a time, so one that raises is logged with its name and counted
by the manager, and the other plugins still run. Hook wrappers are refused at
registration: a wrapper would run around the other plugins' calls and could swallow or
re-raise their errors, which the isolation here promises not to happen.
"""

from __future__ import annotations

import fnmatch
import importlib
import logging
import re
import threading
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
BUILTIN_MODULES = ("catalogcap.plugins.builtin",)
SLOW_SECONDS = 0.5
EXPORTER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


@dataclass(frozen=True)
class Exporter:
    name: str
    fn: Callable[..., dict[str, Any]]
    description: str
    plugin: str


class WrapperRefused(pluggy.PluginValidationError):
    """A plugin implements a catalogcap hook as a hook wrapper, which catalogcap does not run."""


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, plus the plugins that did not load and each plugin's failures.

    The failure counters are shared by every thread that calls hooks through this manager
    (the daemon's worker, the API's thread pool), so they are changed under a lock."""

    def __init__(self) -> None:
        super().__init__("catalogcap")
        self.add_hookspecs(hookspecs)
        self.skipped: dict[str, Distribution | None] = {}  # installed, not allowed by the setting
        self.broken: dict[str, str] = {}  # failed to import: the error
        self.dists: dict[str, Distribution | None] = {}
        self._lock = threading.Lock()
        self._failures: Counter[str] = Counter()
        self._last_errors: dict[str, str] = {}
        self._unsaved: Counter[str] = Counter()  # failures not yet handed to `take_unsaved`

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register `plugin`, refusing one that implements a catalogcap hook as a wrapper."""
        wrappers = [attr for attr in dir(plugin) if attr in self.hook.__dict__
                    and (opts := self.parse_hookimpl_opts(plugin, attr)) is not None
                    and (opts.get("hookwrapper") or opts.get("wrapper"))]
        if wrappers:
            raise WrapperRefused(plugin, f"plugin {name or plugin!r}: hook wrappers are not supported"
                                 f" ({', '.join(sorted(wrappers))}); implement the hook plainly")
        return super().register(plugin, name)

    def record_failure(self, plugin: str, hook_name: str, exc: BaseException) -> None:
        message = redact.text(str(exc))  # a client error message may carry a URL with its password
        with self._lock:
            self._failures[plugin] += 1
            self._unsaved[plugin] += 1
            self._last_errors[plugin] = f"{hook_name}: {type(exc).__name__}: {message}"
        log.error("plugin %s failed in %s: %s: %s", plugin, hook_name, type(exc).__name__, message,
                  exc_info=log.isEnabledFor(logging.DEBUG))

    def failures(self) -> dict[str, int]:
        """Failures of each plugin in this process."""
        with self._lock:
            return dict(self._failures)

    def last_error(self, plugin: str) -> str | None:
        with self._lock:
            return self._last_errors.get(plugin)

    def take_unsaved(self) -> tuple[dict[str, int], dict[str, str]]:
        """Failures since the last call, and each plugin's last error: each failure is handed out once."""
        with self._lock:
            new, self._unsaved = dict(self._unsaved), Counter()
            return new, {name: self._last_errors[name] for name in new}

    def call(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call every plugin's implementation of a hook through pluggy, one plugin at a time so
        that one raising never stops the others; returns the results that are not None.

        A plugin holding the caller's thread longer than SLOW_SECONDS is logged as slow."""
        return [result for _plugin, result in self.call_each(hook_name, **kwargs)]

    def call_each(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """`call`, with the name of the plugin that returned each result: [(plugin, result)]."""
        hook = getattr(self.hook, hook_name)
        impls = hook.get_hookimpls()
        results: list[tuple[str, Any]] = []
        for impl in reversed(impls):  # pluggy's own order: the last registered first
            others = [other.plugin for other in impls if other.plugin is not impl.plugin]
            caller = self.subset_hook_caller(hook_name, others) if others else hook
            started = time.monotonic()
            try:
                results.extend((impl.plugin_name, result) for result in caller(**kwargs))
            except Exception as exc:
                self.record_failure(impl.plugin_name, hook_name, exc)
            finally:
                elapsed = time.monotonic() - started
                if elapsed > SLOW_SECONDS:
                    log.warning("plugin %s took %.1fs in %s; hooks must return quickly (use a thread or outbox)",
                                impl.plugin_name, elapsed, hook_name)
        return results


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
            pm.broken[ep.name] = f"{type(exc).__name__}: {redact.text(str(exc))}"
            pm.record_failure(ep.name, "load", exc)
            log.error("plugin %s (%s) could not be loaded: %s", ep.name, ep.value, pm.broken[ep.name])
            continue
        pm.dists[ep.name] = ep.dist
    return pm


def exporters(pm: PluginManager) -> dict[str, Exporter]:
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
            pm.record_failure(impl.plugin_name, "register_exporters", exc)
    return found
