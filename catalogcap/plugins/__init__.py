"""Plugins: hookspecs, loading, and the dispatcher the daemon, review UI and API call."""

from __future__ import annotations

from typing import Any

from catalogcap.plugins.hookspecs import hookimpl

__all__ = ["Hooks", "hookimpl", "hooks_for"]


class Hooks:
    """Fires hooks with snapshots read from the store; never raises into the caller."""

    def __init__(self, engine: Any, enabled: list[str] | None = None) -> None:
        from catalogcap.plugins.manager import make_manager

        self.engine = engine
        self.pm = make_manager(enabled)

    def _events(self, caption_ids: list[int]):
        from catalogcap.plugins.events import caption_events
        from catalogcap.store.database import read_session

        with read_session(self.engine) as session:
            return caption_events(session, list(caption_ids))

    def captions_created(self, caption_ids: list[int]) -> None:
        from catalogcap.plugins.manager import call_safely, log

        if not self.pm.hook.caption_created.get_hookimpls():
            return
        try:
            events = self._events(caption_ids)
        except Exception as exc:
            log.error("could not read captions for plugins: %s", exc)
            return
        for event in events:
            call_safely(self.pm, "caption_created", caption=event)

    def captions_reviewed(self, caption_ids: list[int], decision: str) -> None:
        from catalogcap.plugins.manager import call_safely, log

        if not self.pm.hook.caption_reviewed.get_hookimpls():
            return
        try:
            events = self._events(caption_ids)
        except Exception as exc:
            log.error("could not read captions for plugins: %s", exc)
            return
        for event in events:
            call_safely(self.pm, "caption_reviewed", caption=event, decision=decision)

    def adapter_promoted(self, adapter: Any) -> None:
        from catalogcap.plugins.events import adapter_event
        from catalogcap.plugins.manager import call_safely

        call_safely(self.pm, "adapter_promoted", adapter=adapter_event(adapter))


def hooks_for(app: Any) -> Hooks:
    """The dispatcher for a CLI invocation (plugins limited by the `plugins` setting)."""
    return Hooks(app.engine, app.settings.plugins)
