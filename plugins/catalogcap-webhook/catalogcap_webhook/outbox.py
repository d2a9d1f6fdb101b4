"""The persistent outbox: one row per (event, URL) in the store's `outbox` table.

A row is written when the event happens and removed from the queue only once its URL
answered 2xx, so a crash or an endpoint that is down for hours loses nothing. The
(idempotency key, URL) pair is unique: the same event queued twice is sent once. Each URL
gets its events in order, one at a time: a delivery is claimed with a lease by one
conditional UPDATE, so processes on any number of hosts sharing the store (PostgreSQL)
never send one row twice at once. Outboxes of older releases (a SQLite file per home) are
moved in on first use.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from catalogcap.store.database import create_store_engine, write_session
from catalogcap.store.models import OutboxRow

log = logging.getLogger("catalogcap.webhook")
LEGACY_FILE = "webhook-outbox.db"  # the per-home outbox of releases before schema 0006
T = OutboxRow.__table__
_COLUMNS = (T.c.id, T.c.event_key, T.c.url, T.c.event_type, T.c.body, T.c.attempts, T.c.created_at)


@dataclass(frozen=True)
class Delivery:
    id: int
    event_key: str
    url: str
    event_type: str
    body: bytes
    attempts: int
    created_at: float


def _heads() -> sa.Select:
    """Each URL's next pending row: they go out in order, one at a time."""
    return sa.select(sa.func.min(T.c.id)).where(T.c.state == "pending").group_by(T.c.url)


class Outbox:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.where = engine.url.render_as_string(hide_password=True)

    @classmethod
    def for_settings(cls, settings: Any) -> Outbox:
        """The outbox in `settings`' store (one engine per URL in this process), with the home's
        old outbox file moved in."""
        url = settings.db_url
        with _lock:
            outbox = _outboxes.get(url)
            if outbox is None:
                outbox = _outboxes[url] = cls(create_store_engine(url))
                outbox.import_legacy(Path(settings.home) / LEGACY_FILE)
        return outbox

    def _insert(self, rows: list[dict[str, Any]]) -> int:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(T).on_conflict_do_nothing(index_elements=["event_key", "url"])
        added = 0
        with write_session(self.engine) as session:
            for row in rows:
                # counted by RETURNING: psycopg reports rowcount -1 for an insert that did nothing
                added += len(session.execute(statement.values(**row).returning(T.c.id)).all())
        return added

    def enqueue(self, event_key: str, event_type: str, body: bytes, urls: list[str],
                now: float | None = None) -> int:
        """Queue the event for each URL; returns how many rows are new (0 when it was queued before)."""
        now = time.time() if now is None else now
        return self._insert([{"event_key": event_key, "url": url, "event_type": event_type, "body": body,
                              "state": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now}
                             for url in urls])

    def claim(self, lease_seconds: float, *, due_only: bool = True, now: float | None = None,
              skip_urls: frozenset[str] = frozenset()) -> list[Delivery]:
        """The oldest pending row of each URL not being sent by anyone, leased to the caller."""
        now = time.time() if now is None else now
        with write_session(self.engine) as session:
            rows = session.execute(sa.select(*_COLUMNS, T.c.next_attempt_at, T.c.lease_until)
                                   .where(T.c.id.in_(_heads()))).all()
            claimed = []
            for row in rows:
                if row.url in skip_urls or (row.lease_until or 0) > now or (due_only and row.next_attempt_at > now):
                    continue
                # taken only if still free when we write: another host may have leased it since we read
                taken = session.execute(
                    sa.update(T).where(T.c.id == row.id, T.c.state == "pending",
                                       sa.or_(T.c.lease_until.is_(None), T.c.lease_until <= now))
                    .values(lease_until=now + lease_seconds)
                ).rowcount
                if taken:
                    claimed.append(Delivery(*row[:7]))
            return claimed

    def delivered(self, delivery_id: int, status: int, now: float | None = None) -> None:
        with write_session(self.engine) as session:
            session.execute(sa.update(T).where(T.c.id == delivery_id).values(
                state="delivered", attempts=T.c.attempts + 1, last_status=status, last_error=None,
                delivered_at=time.time() if now is None else now, lease_until=None))

    def failed(self, delivery_id: int, error: str, status: int | None, *, retry_at: float | None) -> None:
        """Record a failed attempt: retried at `retry_at`, or dead (kept; `webhook retry` re-arms it)."""
        values: dict[str, Any] = {"state": "pending" if retry_at is not None else "dead",
                                  "attempts": T.c.attempts + 1, "last_status": status, "last_error": error[:1000],
                                  "lease_until": None}
        if retry_at is not None:
            values["next_attempt_at"] = retry_at
        with write_session(self.engine) as session:
            session.execute(sa.update(T).where(T.c.id == delivery_id).values(**values))

    def retry_dead(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with write_session(self.engine) as session:
            return session.execute(sa.update(T).where(T.c.state == "dead").values(
                state="pending", attempts=0, created_at=now, next_attempt_at=now)).rowcount

    def prune(self, older_than_seconds: float, now: float | None = None) -> int:
        """Forget delivered rows older than this (until then, queueing the same event again is a no-op)."""
        cutoff = (time.time() if now is None else now) - older_than_seconds
        with write_session(self.engine) as session:
            return session.execute(sa.delete(T).where(T.c.state == "delivered",
                                                      T.c.delivered_at < cutoff)).rowcount

    def next_due(self) -> float | None:
        """When the earliest URL's head row can next be tried (None: nothing pending)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(T.c.next_attempt_at, T.c.lease_until).where(T.c.id.in_(_heads()))).all()
        return min((max(due, lease or 0) for due, lease in rows), default=None)

    def summary(self) -> dict[str, dict[str, object]]:
        """Per URL: rows by state, the oldest pending one's age and the last error."""
        out: dict[str, dict[str, object]] = {}
        with self.engine.connect() as conn:
            for url, state, count in conn.execute(
                    sa.select(T.c.url, T.c.state, sa.func.count()).group_by(T.c.url, T.c.state)):
                out.setdefault(url, {"pending": 0, "delivered": 0, "dead": 0})[state] = count
            oldest = conn.execute(sa.select(T.c.url, sa.func.min(T.c.created_at))
                                  .where(T.c.state != "delivered").group_by(T.c.url)).all()
            for url, created in oldest:
                error = conn.execute(sa.select(T.c.last_error).where(T.c.url == url, T.c.last_error.is_not(None))
                                     .order_by(T.c.id.desc()).limit(1)).scalar()
                out[url].update(oldest_undelivered_age_s=round(time.time() - created, 1), last_error=error)
        return out

    def import_legacy(self, path: Path) -> int:
        """Move the rows of an old per-home outbox file into the store (delivered ones too, so they
        are not sent again), then rename the file to `*.imported`; returns how many rows came over."""
        if not path.is_file():
            return 0
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT event_key, url, event_type, body, state, attempts, next_attempt_at,"
                                " last_status, last_error, created_at, delivered_at FROM deliveries ORDER BY id"
                                ).fetchall()
        names = ("event_key", "url", "event_type", "body", "state", "attempts", "next_attempt_at", "last_status",
                 "last_error", "created_at", "delivered_at")
        added = self._insert([dict(zip(names, row)) for row in rows])
        path.rename(path.with_name(path.name + ".imported"))
        log.info("moved %d webhook event(s) from %s into %s", added, path, self.where)
        return added


_outboxes: dict[str, Outbox] = {}
_lock = threading.Lock()
