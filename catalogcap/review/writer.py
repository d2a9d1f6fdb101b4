"""The review app's writer: decisions saved one after another, off the UI thread.

One thread writes, in the order the keys were pressed, so an undo always follows the
decision it undoes; each result is posted back to the app as a message. Plugin hooks run
on a second thread, so a slow webhook never delays the next decision.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.engine import Engine
from textual.message import Message

from catalogcap.errors import CatalogcapError
from catalogcap.review.decisions import Decisions, Outcome, writer_engine
from catalogcap.review.messages import WriteFailed, Written
from catalogcap.store.captions import DEFAULT_ALT_TEXT_LIMIT

log = logging.getLogger(__name__)


class Writer:
    def __init__(self, engine: Engine, reviewer: str, post: Callable[[Message], Any],
                 on_reviewed: Callable[[list[int], str], None] | None = None, *,
                 alt_text_limit: int = DEFAULT_ALT_TEXT_LIMIT) -> None:
        self._post = post
        self._on_reviewed = on_reviewed
        self._writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalogcap-review-write")
        self._hooks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalogcap-review-hooks")
        self._engine = writer_engine(engine)
        self._own_engine = self._engine is not engine
        self.decisions = Decisions(self._engine, reviewer, on_reviewed=self._fire if on_reviewed else None,
                                   alt_text_limit=alt_text_limit)

    def decide(self, targets: list[tuple[int, int]], decision: str, *, text: str | None = None,
               reason: str | None = None) -> None:
        def job() -> Outcome:
            return self.decisions.decide(targets, decision, text=text, reason=reason)

        self._writes.submit(self._run, job, [caption_id for caption_id, _ in targets])

    def undo(self) -> None:
        self._writes.submit(self._run, self.decisions.undo, [])

    async def flush(self) -> None:
        """Wait until everything submitted so far is written."""
        await asyncio.wrap_future(self._writes.submit(lambda: None))

    def close(self) -> None:
        """Finish every queued decision and hook, then stop the threads."""
        self._writes.shutdown(wait=True)
        self._hooks.shutdown(wait=True)
        if self._own_engine:
            self._engine.dispose()

    def _run(self, job: Callable[[], Any], ids: list[int]) -> None:
        try:
            outcome = job()
        except CatalogcapError as exc:  # a rule of the store (a text over its limit): the reason is the news
            self._post(WriteFailed(ids, str(exc)))
        except Exception as exc:  # the database refused (disk full, locked past the timeout...)
            log.exception("review: could not save a decision on %s", ids or "undo")
            self._post(WriteFailed(ids, f"{type(exc).__name__}: {exc}"))
        else:
            self._post(Written(outcome, ids))

    def _fire(self, ids: list[int], decision: str) -> None:
        self._hooks.submit(self._on_reviewed, ids, decision)
