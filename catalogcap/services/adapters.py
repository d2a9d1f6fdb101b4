"""Adapter changes from any door: promote, roll back, delete; announced after commit.

A rollback announces `adapter_rolled_back` (the adapter taken down and the one active now)
and, when an older adapter is active again, `adapter_promoted` for it, so a plugin that
only listens to promotions still learns which adapter captions from now on.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from catalogcap.errors import CatalogcapError
from catalogcap.services.announce import Announcer
from catalogcap.store.models import Adapter
from catalogcap.training import registry


class ForeignAdapter(CatalogcapError):
    """An adapter trained for another base model than the configured one."""

    def __init__(self, adapter: Adapter, model: str) -> None:
        super().__init__(
            f"adapter {adapter.id} was trained for model {adapter.base_model}, not the configured model {model};"
            " set `model` to that model or train an adapter for this one"
        )
        self.adapter = adapter


def promote(engine: Engine, announce: Announcer, adapter_id: str, *, model: str,
            reason: str = "manual promotion") -> Adapter:
    """Make `adapter_id` active now, bypassing the gate; refused for an adapter of another model."""
    adapter = registry.get(engine, adapter_id)
    if registry.foreign(adapter, model):
        raise ForeignAdapter(adapter, model)
    was_active = adapter.state == "active"
    adapter = registry.promote(engine, adapter_id, reason=reason, manual=True)
    if not was_active:
        announce.adapter_promoted(adapter)
    return adapter


def rollback(engine: Engine, announce: Announcer) -> registry.Rollback:
    """Reactivate the adapter active before the current one (or the base model)."""
    result = registry.rollback(engine)
    announce.adapter_rolled_back(result.rolled_back, result.active)
    if result.active is not None:
        announce.adapter_promoted(result.active)
    return result


def delete(engine: Engine, adapter_id: str) -> Adapter:
    """Delete an adapter's files (never the active one's); its row stays. Nothing to announce:
    no caption and no active adapter changes."""
    return registry.delete(engine, adapter_id)

