"""Product context from plugins (`product_context` hook), merged with the store's rows.

`context_with_plugins` is what the captioning side asks for an image's context: the store's
rows (`context_for`) with what PIM/DAM plugins return placed at the plugins' rank,
api > sidecar > plugin > an import. When no plugin implements the hook it is exactly
`context_for` (no snapshot is built, no plugin code runs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlmodel import Session

from catalogcap.products.context import PRECEDENCE, Context, _values, context_for, rows_for
from catalogcap.products.importer import field_name
from catalogcap.store.models import Asset
from catalogcap.store.paths import live_paths

log = logging.getLogger("catalogcap.plugins")
HOOK = "product_context"
MAX_FIELDS = 100
MAX_VALUE_CHARS = 10_000


@dataclass(frozen=True)
class AssetInfo:
    """What a `product_context` implementation is told about the image."""

    id: int
    fingerprint: str
    paths: tuple[str, ...]  # live paths, primary first
    width: int | None
    height: int | None
    format: str | None

    @property
    def path(self) -> str | None:
        return self.paths[0] if self.paths else None


@lru_cache(maxsize=1)
def default_manager():
    """The process's plugin manager for the `plugins` setting, made on first use (a caller that
    has its own manager, such as the worker's `Hooks.pm`, passes it instead)."""
    from catalogcap.plugins.manager import make_manager
    from catalogcap.settings import load_settings

    return make_manager(load_settings().plugins)


def _clean(plugin: str, result: Any, pm: Any) -> dict[str, str]:
    """A plugin's result as fields: string keys as field names (`field_name`), scalar values as text; a
    result that is not a dict is a failure of that plugin (logged, counted, ignored)."""
    if not isinstance(result, dict):
        pm.record_failure(plugin, HOOK, TypeError(f"returned {type(result).__name__}, not a dict of fields;"
                                                  " ignored"))
        return {}
    fields: dict[str, str] = {}
    for key, value in list(result.items())[:MAX_FIELDS]:
        name = field_name(key) if isinstance(key, str) else ""
        if not name or isinstance(value, bool) or not isinstance(value, (str, int, float)):
            continue
        text = str(value).strip()[:MAX_VALUE_CHARS]
        if text:
            fields[name] = text
    return fields


def plugin_fields(session: Session, asset_id: int, paths: list[str] | None, pm: Any) -> tuple[dict[str, str],
                                                                                           list[str]]:
    """Fields the plugins return for the asset (later plugins' values first, pluggy's order) and
    the names of the plugins that gave any."""
    asset = session.get(Asset, asset_id)
    if asset is None:
        return {}, []
    live = tuple(paths) if paths else tuple(live_paths(session, [asset_id]).get(asset_id, []))
    info = AssetInfo(asset.id, asset.fingerprint, live, asset.width, asset.height, asset.format)
    merged: dict[str, str] = {}
    names: list[str] = []
    for plugin, result in reversed(pm.call_each(HOOK, path=info.path, asset=info)):
        fields = _clean(plugin, result, pm)
        if fields:
            merged.update(fields)  # pluggy calls the last registered first; the first registered wins last
            names.append(plugin)
    return merged, names


def context_with_plugins(session: Session, asset_id: int, paths: list[str] | None = None, *,
                         pm: Any = None) -> Context:
    """`context_for` with the `product_context` plugins' fields merged at their rank
    (api > sidecar > plugin > import). `pm`: a plugin manager (default: the process's, for the
    `plugins` setting)."""
    pm = pm if pm is not None else default_manager()
    if not getattr(pm.hook, HOOK).get_hookimpls():
        return context_for(session, asset_id, paths)
    fields, plugins = plugin_fields(session, asset_id, paths, pm)
    if not fields:
        return context_for(session, asset_id, paths)
    context = Context()
    rank = PRECEDENCE["plugin"]
    rows = rows_for(session, asset_id, paths)
    below = [r for r in rows if PRECEDENCE.get(r.source.split(":", 1)[0], 9) > rank]
    above = [r for r in rows if PRECEDENCE.get(r.source.split(":", 1)[0], 9) <= rank]
    for row in below:
        context.fields.update(_values(row))
        context.sources.append({"source": row.source, "key": row.key, "origin": row.origin})
    context.fields.update(fields)
    context.sources.append({"source": "plugin", "key": f"plugin:{asset_id}", "origin": ", ".join(plugins)})
    for row in above:
        context.fields.update(_values(row))
        context.sources.append({"source": row.source, "key": row.key, "origin": row.origin})
    for row in rows:
        if row.alt_text and row.alt_text.strip():
            context.alt_text, context.alt_text_source = row.alt_text.strip(), row.source
    context.sources.reverse()  # the winning source first, as context_for
    return context
