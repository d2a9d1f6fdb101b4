"""A reviewer's decisions, written the moment they are made, with undo.

Each call is one short write transaction (BEGIN IMMEDIATE, waiting on the busy timeout
while the daemon commits), so a crash loses nothing already decided. Every decision names
the caption version the reviewer saw: when someone else decided first, that caption is
reported as a conflict with its current state and the rest of the batch is still saved.
Undo puts back exactly what a decision replaced, unless someone changed the caption since.

SQLite hands its write lock to whoever asks at the right moment, not to whoever waited
longest, so a daemon committing batch after batch can starve a waiting reviewer. The
writer therefore waits on the lock in short turns (see `writer_engine`) and retries a
transaction that found the database busy, for up to `RETRY_SECONDS`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from catalogcap.services import Callbacks
from catalogcap.services.captions import Decided, Decision, decide_together, restore_together
from catalogcap.store.captions import DEFAULT_ALT_TEXT_LIMIT
from catalogcap.store.database import create_store_engine
from catalogcap.store.models import Caption

UNDO_DEPTH = 200
RETRY_SECONDS = 120.0
TURN_MS = 50

log = logging.getLogger(__name__)
T = TypeVar("T")


def writer_engine(engine: Engine) -> Engine:
    """For SQLite, an engine on the same file whose connections wait at most TURN_MS for the
    write lock per try: with the retries in `Decisions`, it polls a busy lock about ten
    times as often as the 30 s busy timeout does. Other databases: the engine itself."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return engine
    own = create_store_engine(engine.url.render_as_string(hide_password=False), migrate=False)

    def short_turns(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute(f"PRAGMA busy_timeout = {TURN_MS}")

    sa.event.listen(own, "connect", short_turns)
    return own


def _busy(exc: sa.exc.OperationalError) -> bool:
    message = str(exc.orig).lower()
    return "locked" in message or "busy" in message


@dataclass(frozen=True)
class Saved:
    """A caption as it is after a write."""

    id: int
    state: str
    version: int
    text: str
    reviewer: str | None

    @classmethod
    def of(cls, caption: Caption) -> Saved:
        return cls(caption.id, caption.state, caption.version, caption.text, caption.reviewer)


@dataclass
class Outcome:
    """What one decision (or one undo) did, caption by caption."""

    decision: str
    saved: list[Saved] = field(default_factory=list)
    conflicts: list[tuple[Saved, str]] = field(default_factory=list)  # current caption, why
    missing: list[int] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        return [s.id for s in self.saved]


@dataclass(frozen=True)
class _Done:
    caption_id: int
    before: dict[str, Any]
    version_after: int


class Decisions:
    """Decides captions for one reviewer and remembers how to undo; not thread-safe (the app
    calls it from one writer thread, in the order the keys were pressed)."""

    def __init__(self, engine: Engine, reviewer: str,
                 on_reviewed: Callable[[list[int], str], None] | None = None, *,
                 alt_text_limit: int = DEFAULT_ALT_TEXT_LIMIT) -> None:
        self.engine = engine
        self.reviewer = reviewer
        self.alt_text_limit = alt_text_limit
        self.announce = Callbacks(reviewed=on_reviewed)  # called by the services after each commit
        self._undo: list[tuple[str, list[_Done]]] = []

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    def _retrying(self, transaction: Callable[[], T]) -> T:
        deadline = time.monotonic() + RETRY_SECONDS
        while True:
            try:
                return transaction()
            except sa.exc.OperationalError as exc:
                if not _busy(exc) or time.monotonic() > deadline:
                    raise
                log.debug("review: database busy, trying again")
                time.sleep(random.uniform(0.001, 0.005))

    def decide(self, targets: Iterable[tuple[int, int | None]], decision: str, *, text: str | None = None,
               reason: str | None = None) -> Outcome:
        """Apply `decision` to each (caption id, version seen) in one transaction."""
        wanted = Decision(decision, self.reviewer, text=text, reason=reason, alt_text_limit=self.alt_text_limit)
        targets = list(targets)
        decided = self._retrying(lambda: decide_together(self.engine, self.announce, targets, wanted))
        if decided.changes:
            self._undo.append((decision, [_Done(c.after.id, c.before, c.after.version) for c in decided.changes]))
            del self._undo[:-UNDO_DEPTH]
        return _outcome(decision, decided)

    def undo(self) -> Outcome | None:
        """Revert the last decision (all captions of a bulk accept); None when there is none.

        The decision stays on the undo stack until the undo is written: an undo the database
        refused (locked past the retries, disk full) can be tried again with the next `u`."""
        if not self._undo:
            return None
        decision, done = self._undo[-1]
        undone = [(item.caption_id, item.before, item.version_after) for item in done]
        decided = self._retrying(lambda: restore_together(self.engine, self.announce, undone))
        self._undo.pop()
        return _outcome(f"undo {decision}", decided)


def _outcome(decision: str, decided: Decided) -> Outcome:
    return Outcome(decision, saved=[Saved.of(c.after) for c in decided.changes],
                   conflicts=[(Saved.of(c.caption), str(c)) for c in decided.conflicts],
                   missing=list(decided.missing))
