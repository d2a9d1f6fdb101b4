"""How a service tells the plugins what it committed, and on which thread that happens.

`catalogcap.plugins.Hooks` is the real announcer; `Deferred` runs another announcer's
calls through a submit function (a hook thread, FastAPI's background tasks); `Callbacks`
adapts plain functions; `SILENT` announces nothing (plugins off, tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from catalogcap.store.models import Adapter


class Announcer(Protocol):
    def captions_created(self, caption_ids: list[int]) -> None: ...

    def captions_reviewed(self, caption_ids: list[int], decision: str) -> None: ...

    def adapter_promoted(self, adapter: Adapter) -> None: ...

    def adapter_rolled_back(self, adapter: Adapter, active: Adapter | None) -> None: ...


@dataclass(frozen=True)
class Callbacks:
    """An announcer made of optional functions; a missing one ignores its event."""

    created: Callable[[list[int]], None] | None = None
    reviewed: Callable[[list[int], str], None] | None = None
    promoted: Callable[[Adapter], None] | None = None
    rolled_back: Callable[[Adapter, Adapter | None], None] | None = None

    def captions_created(self, caption_ids: list[int]) -> None:
        if self.created is not None and caption_ids:
            self.created(caption_ids)

    def captions_reviewed(self, caption_ids: list[int], decision: str) -> None:
        if self.reviewed is not None and caption_ids:
            self.reviewed(caption_ids, decision)

    def adapter_promoted(self, adapter: Adapter) -> None:
        if self.promoted is not None:
            self.promoted(adapter)

    def adapter_rolled_back(self, adapter: Adapter, active: Adapter | None) -> None:
        if self.rolled_back is not None:
            self.rolled_back(adapter, active)


SILENT: Announcer = Callbacks()


class Deferred:
    """Announces through `submit(fn, *args)` (a thread pool, a background task queue), so a
    slow plugin never holds the caller."""

    def __init__(self, inner: Announcer, submit: Callable[..., Any]) -> None:
        self._inner, self._submit = inner, submit

    def captions_created(self, caption_ids: list[int]) -> None:
        if caption_ids:
            self._submit(self._inner.captions_created, list(caption_ids))

    def captions_reviewed(self, caption_ids: list[int], decision: str) -> None:
        if caption_ids:
            self._submit(self._inner.captions_reviewed, list(caption_ids), decision)

    def adapter_promoted(self, adapter: Adapter) -> None:
        self._submit(self._inner.adapter_promoted, adapter)

    def adapter_rolled_back(self, adapter: Adapter, active: Adapter | None) -> None:
        self._submit(self._inner.adapter_rolled_back, adapter, active)
