"""Plugins: hookspecs, loading, and the dispatcher the daemon, review UI and API call."""

from __future__ import annotations

import json
import logging
from typing import Any

from catalogcap.plugins.hookspecs import hookimpl

__all__ = ["Hooks", "hookimpl", "hooks_for", "plugin_failures"]

log = logging.getLogger("catalogcap.plugins")
FAILURE_KEY = "plugin_failures:"


class Hooks:
    """Fires hooks with snapshots read from the store; never raises into the caller.

    Hooks run in the caller's thread; a plugin that raises is logged, counted by the
    manager and recorded in the store (`plugin_failures`), and the caller carries on.
    It implements `catalogcap.services.Announcer`: the services call it after each commit."""

    def __init__(self, engine: Any, enabled: list[str] | None = None, settings: Any = None) -> None:
        from catalogcap.plugins.manager import make_manager

        self.engine = engine
        self._settings = settings
        if enabled is None and settings is not None:
            enabled = settings.plugins
        self.pm = make_manager(enabled)

    @property
    def settings(self) -> Any:
        if self._settings is None:
            from catalogcap.settings import load_settings

            self._settings = load_settings()
        return self._settings

    def _events(self, caption_ids: list[int]):
        from catalogcap.plugins.events import caption_events
        from catalogcap.store.database import read_session

        with read_session(self.engine) as session:
            return caption_events(session, list(caption_ids))

    def _fire(self, hook_name: str, caption_ids: list[int], **kwargs: Any) -> None:
        if not caption_ids or not getattr(self.pm.hook, hook_name).get_hookimpls():
            return
        try:
            settings = self.settings
            events = self._events(caption_ids)
        except Exception as exc:  # a bad setting or the store gone for a moment: the caller carries on
            log.error("plugins not called for captions %s: %s: %s", caption_ids[:5], type(exc).__name__, exc)
            return
        for event in events:
            self.pm.call(hook_name, caption=event, settings=settings, **kwargs)
        self._save_failures()

    def captions_created(self, caption_ids: list[int]) -> None:
        self._fire("caption_created", caption_ids)

    def captions_reviewed(self, caption_ids: list[int], decision: str) -> None:
        self._fire("caption_reviewed", caption_ids, decision=decision)

    def adapter_promoted(self, adapter_row: Any) -> None:
        self._fire_adapter("adapter_promoted", adapter_row)

    def adapter_rolled_back(self, adapter_row: Any, active_row: Any | None) -> None:
        from catalogcap.plugins.events import adapter_event

        self._fire_adapter("adapter_rolled_back", adapter_row,
                           active=adapter_event(active_row) if active_row is not None else None)

    def _fire_adapter(self, hook_name: str, adapter_row: Any, **kwargs: Any) -> None:
        from catalogcap.plugins.events import adapter_event

        try:
            event, settings = adapter_event(adapter_row), self.settings
        except Exception as exc:
            log.error("could not prepare adapter %s for plugins: %s", getattr(adapter_row, "id", "?"), exc)
            return
        self.pm.call(hook_name, adapter=event, settings=settings, **kwargs)
        self._save_failures()

    def _save_failures(self) -> None:
        """Add the failures since the last save to the store's per-plugin counters, best effort."""
        new, errors = self.pm.take_unsaved()
        if new:
            try:
                record_failures(self.engine, new, errors)
            except Exception as exc:
                log.error("could not record plugin failures %s in the store: %s", new, exc)


def record_failures(engine: Any, new: dict[str, int], errors: dict[str, str]) -> None:
    from catalogcap.store.database import write_session
    from catalogcap.store.models import Meta, utcnow

    with write_session(engine) as session:
        for name, count in new.items():
            row = session.get(Meta, FAILURE_KEY + name)
            data = json.loads(row.value) if row else {"count": 0}
            data.update(count=data["count"] + count, last_error=errors.get(name), at=utcnow().isoformat())
            session.merge(Meta(key=FAILURE_KEY + name, value=json.dumps(data)))


def plugin_failures(engine: Any) -> dict[str, dict[str, Any]]:
    """Failures of each plugin recorded in the store by every process: {name: {count, last_error, at}}."""
    from sqlmodel import col, select

    from catalogcap.store.database import read_session
    from catalogcap.store.models import Meta

    with read_session(engine) as session:
        rows = session.exec(select(Meta).where(col(Meta.key).startswith(FAILURE_KEY))).all()
    return {row.key[len(FAILURE_KEY):]: json.loads(row.value) for row in rows}


def hooks_for(app: Any) -> Hooks:
    """The dispatcher for a CLI invocation (plugins limited by the `plugins` setting)."""
    return Hooks(app.engine, app.settings.plugins, settings=app.settings)
