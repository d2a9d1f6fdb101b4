"""The captioner for the active adapter, rebuilt when the active adapter changes.

An adapter trained for another base model than the configured one is never applied: the
base model captions instead, with one warning per such adapter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Engine

from catalogcap.settings import Settings
from catalogcap.store.models import Adapter
from catalogcap.training.registry import usable_active
from catalogcap.worker.captioner import BatchCaptioner

log = logging.getLogger("catalogcap.worker")
CaptionerFactory = Callable[[Settings, Adapter | None], BatchCaptioner]


class CaptionerCache:
    def __init__(self, engine: Engine, settings: Settings, factory: CaptionerFactory | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self._factory = factory or default_factory
        self._captioner: BatchCaptioner | None = None
        self._key: tuple[str, str] | None = None

    def get(self) -> BatchCaptioner:
        """The captioner for the adapter active now (loaded on first use or after a change)."""
        adapter, refused = usable_active(self.engine, self.settings.model)
        if refused is not None:
            if self._key != ("mismatch", refused.id):
                log.warning("active adapter %s was trained for model %s, not %s; captioning without it",
                            refused.id, refused.base_model, self.settings.model)
            key: tuple[str, str] | None = ("mismatch", refused.id)
        else:
            key = (adapter.id, adapter.path) if adapter else None
        if self._captioner is None or key != self._key:
            if self._captioner is not None:
                log.info("active adapter changed to %s; reloading the captioner", key[0] if key else "none")
            self._captioner = self._factory(self.settings, adapter)
            self._key = key
        return self._captioner


def default_factory(settings: Settings, adapter: Adapter | None) -> BatchCaptioner:
    from catalogcap.captioner import Captioner

    if adapter is None:
        return Captioner.from_settings(settings)
    return Captioner.from_settings(settings, adapter_id=adapter.id, adapter_dir=Path(adapter.path))
