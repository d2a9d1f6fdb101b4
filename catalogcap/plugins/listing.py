"""What `plugins list` reports: each plugin's package, hooks, exporters, settings and failures."""

from __future__ import annotations

from importlib.metadata import Distribution
from typing import Any

from catalogcap.plugins.config import settings_docs, settings_models
from catalogcap.plugins.manager import BUILTIN_MODULES, PluginManager, exporters


def describe(pm: PluginManager) -> list[dict[str, Any]]:
    """Installed plugins with versions, hooks, exporters and failures (for `plugins list`)."""
    by_plugin: dict[str, list[str]] = {}
    for exporter in exporters(pm).values():
        by_plugin.setdefault(exporter.plugin, []).append(exporter.name)
    sections: dict[str, dict[str, Any]] = {}
    for section, (model, plugin) in settings_models(pm).items():
        sections.setdefault(plugin, {})[section] = settings_docs(model)
    items = []
    for name, plugin in pm.list_name_plugin():
        items.append(_item(pm, name, pm.dists.get(name), "loaded", hooks=sorted(
            h.name for h in pm.get_hookcallers(plugin) or []), exporters=sorted(by_plugin.get(name, [])),
            settings=sections.get(name, {})))
    for name, dist in pm.skipped.items():
        items.append(_item(pm, name, dist, "disabled", error="not allowed by the `plugins` setting"))
    for name, error in pm.broken.items():
        items.append(_item(pm, name, None, "broken", error=error))
    return sorted(items, key=lambda item: item["name"])


def _item(pm: PluginManager, name: str, dist: Distribution | None, status: str, **extra: Any) -> dict[str, Any]:
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
        "failures": pm.failures().get(name, 0),
        "last_error": pm.last_error(name),
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
