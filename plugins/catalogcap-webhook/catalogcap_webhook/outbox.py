"""The persistent outbox: one row per (event, URL), in a small SQLite file in CATALOGCAP_HOME.

A row is written when the event happens and removed from the queue only once its URL
answered 2xx, so a crash or an endpoint that is down for hours loses nothing. The
(idempotency key, URL) pair is unique: the same event queued twice is sent once. Each URL
gets its events in order, one at a time: a delivery is claimed with a lease, so two
processes draining the same outbox never send one row twice at once.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FILE_NAME = "webhook-outbox.db"
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    event_key TEXT NOT NULL,
    url TEXT NOT NULL,
    event_type TEXT NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    lease_until REAL,
    last_status INTEGER,
    last_error TEXT,
    created_at REAL NOT NULL,
    delivered_at REAL,
    UNIQUE (event_key, url)
);
CREATE INDEX IF NOT EXISTS ix_deliveries_state_url ON deliveries (state, url, id);
"""
HEADS = "SELECT MIN(id) FROM deliveries WHERE state = 'pending' GROUP BY url"  # each URL's next row, in order


@dataclass(frozen=True)
class Delivery:
    id: int
    event_key: str
    url: str
    event_type: str
    body: bytes
    attempts: int
    created_at: float


class Outbox:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with self._connect() as conn:
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                for statement in filter(str.strip, SCHEMA.split(";")):
                    conn.execute(statement)  # not executescript: it would commit our transaction
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @classmethod
    def in_home(cls, home: Path) -> Outbox:
        Path(home).mkdir(parents=True, exist_ok=True)
        return cls(Path(home) / FILE_NAME)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()

    def enqueue(self, event_key: str, event_type: str, body: bytes, urls: list[str],
                now: float | None = None) -> int:
        """Queue the event for each URL; returns how many rows are new (0 when it was queued before)."""
        now = time.time() if now is None else now
        with self._connect() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO deliveries"
                " (event_key, url, event_type, body, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(event_key, url, event_type, body, now, now) for url in urls],
            )
            return conn.total_changes - before

    def claim(self, lease_seconds: float, *, due_only: bool = True, now: float | None = None,
              skip_urls: frozenset[str] = frozenset()) -> list[Delivery]:
        """The oldest pending row of each URL not being sent by anyone, leased to the caller."""
        now = time.time() if now is None else now
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, event_key, url, event_type, body, attempts, created_at, next_attempt_at,"
                f" lease_until FROM deliveries WHERE id IN ({HEADS})"
            ).fetchall()
            claimed = []
            for row in rows:
                url, next_attempt_at, lease_until = row[2], row[7], row[8]
                if url in skip_urls or (lease_until or 0) > now or (due_only and next_attempt_at > now):
                    continue
                conn.execute("UPDATE deliveries SET lease_until = ? WHERE id = ?",
                             (now + lease_seconds, row[0]))
                claimed.append(Delivery(*row[:7]))
            return claimed

    def delivered(self, delivery_id: int, status: int, now: float | None = None) -> None:
        with self._connect() as conn:
            conn.execute(
                "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, last_status = ?,"
                " last_error = NULL, delivered_at = ?, lease_until = NULL WHERE id = ?",
                (status, time.time() if now is None else now, delivery_id))

    def failed(self, delivery_id: int, error: str, status: int | None, *, retry_at: float | None) -> None:
        """Record a failed attempt: retried at `retry_at`, or dead (kept; `webhook retry` re-arms it)."""
        with self._connect() as conn:
            conn.execute(
                "UPDATE deliveries SET state = ?, attempts = attempts + 1, last_status = ?, last_error = ?,"
                " next_attempt_at = COALESCE(?, next_attempt_at), lease_until = NULL WHERE id = ?",
                ("pending" if retry_at is not None else "dead", status, error[:1000], retry_at, delivery_id))

    def retry_dead(self, now: float | None = None) -> int:
        with self._connect() as conn:
            return conn.execute(
                "UPDATE deliveries SET state = 'pending', attempts = 0, created_at = ?, next_attempt_at = ?"
                " WHERE state = 'dead'", ((time.time() if now is None else now),) * 2).rowcount

    def prune(self, older_than_seconds: float, now: float | None = None) -> int:
        """Forget delivered rows older than this (until then, queueing the same event again is a no-op)."""
        cutoff = (time.time() if now is None else now) - older_than_seconds
        with self._connect() as conn:
            return conn.execute("DELETE FROM deliveries WHERE state = 'delivered' AND delivered_at < ?",
                                (cutoff,)).rowcount

    def next_due(self) -> float | None:
        """When the earliest URL's head row can next be tried (None: nothing pending)."""
        with self._connect() as conn:
            return conn.execute(
                "SELECT MIN(MAX(next_attempt_at, COALESCE(lease_until, 0))) FROM deliveries WHERE id IN"
                f" ({HEADS})").fetchone()[0]

    def summary(self) -> dict[str, dict[str, object]]:
        """Per URL: rows by state, the oldest pending one's age and the last error."""
        with self._connect() as conn:
            out: dict[str, dict[str, object]] = {}
            counts = conn.execute("SELECT url, state, COUNT(*) FROM deliveries GROUP BY url, state")
            for url, state, count in counts:
                out.setdefault(url, {"pending": 0, "delivered": 0, "dead": 0})[state] = count
            for url, oldest, error in conn.execute(
                "SELECT url, MIN(created_at), (SELECT last_error FROM deliveries d2 WHERE d2.url = d.url"
                " AND last_error IS NOT NULL ORDER BY id DESC LIMIT 1) FROM deliveries d"
                " WHERE state != 'delivered' GROUP BY url"
            ):
                out[url].update(oldest_undelivered_age_s=round(time.time() - oldest, 1), last_error=error)
            return out
