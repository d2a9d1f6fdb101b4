"""Captioning workers without folder watching (`catalogcap worker`): several per machine, on
any number of machines sharing one store.

Each process runs the daemon's `Worker` loop under its own lease owner id, keeps a row in
the `workers` table fresh (host, pid, heartbeat, jobs done) so `status` can list the live
ones, and on PostgreSQL wakes on LISTEN/NOTIFY when jobs are queued; polling stays as the
fallback, so a lost listening connection only costs latency.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from catalogcap.settings import Settings
from catalogcap.store.database import read_session, write_session
from catalogcap.store.models import WorkerRow, utcnow
from catalogcap.store.queue import CHANNEL, new_owner, recover_stale, release

log = logging.getLogger("catalogcap.workers")

HEARTBEAT_SECONDS = 5.0
LIVE_SECONDS = 30.0  # a worker whose heartbeat is older than this is not listed as live


@dataclass(frozen=True)
class RunSummary:
    owner: str
    captioned: int
    released: int


def live_workers(engine: Engine, *, now: Any = None) -> list[dict[str, Any]]:
    """The workers that beat within `LIVE_SECONDS` and have not said they stopped."""
    now = now or utcnow()
    with read_session(engine) as session:
        rows = session.exec(
            select(WorkerRow).where(col(WorkerRow.stopped_at).is_(None),
                                    WorkerRow.heartbeat_at >= now - timedelta(seconds=LIVE_SECONDS))
            .order_by(WorkerRow.host, WorkerRow.pid)
        ).all()
    return [{"id": r.id, "host": r.host, "pid": r.pid, "started_at": r.started_at.isoformat(),
             "heartbeat_at": r.heartbeat_at.isoformat(), "jobs_done": r.jobs_done} for r in rows]


class Heartbeat:
    """The worker's row: written at start, refreshed every `HEARTBEAT_SECONDS`, closed at exit."""

    def __init__(self, engine: Engine, owner: str, jobs_done: Callable[[], int]) -> None:
        self.engine, self.owner, self.jobs_done = engine, owner, jobs_done

    def start(self) -> None:
        now = utcnow()
        with write_session(self.engine) as session:
            session.add(WorkerRow(id=self.owner, host=socket.gethostname(), pid=os.getpid(), started_at=now,
                                  heartbeat_at=now))
            # rows of workers gone for a day are history nobody reads
            session.execute(sa.delete(WorkerRow).where(WorkerRow.heartbeat_at < now - timedelta(days=1)))

    def beat(self, *, stopped: bool = False) -> None:
        now = utcnow()
        values: dict[str, Any] = {"heartbeat_at": now, "jobs_done": self.jobs_done()}
        if stopped:
            values["stopped_at"] = now
        with write_session(self.engine) as session:
            session.execute(sa.update(WorkerRow).where(WorkerRow.id == self.owner).values(**values))

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                self.beat()
            except Exception as exc:  # the database is away for a moment; the next beat tries again
                log.warning("could not record the heartbeat: %s", exc)


def listen(engine: Engine, wake: threading.Event, stop: threading.Event) -> None:
    """Set `wake` on each NOTIFY of queued jobs (PostgreSQL only); reconnects after a failure."""
    if engine.dialect.name != "postgresql":
        return
    failures = 0
    while not stop.is_set():
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql(f"LISTEN {CHANNEL}")
                driver = conn.connection.driver_connection
                wake.set()  # jobs may have been queued while we were not listening
                failures = 0
                while not stop.is_set():
                    for _ in driver.notifies(timeout=1.0, stop_after=1):
                        wake.set()
        except Exception as exc:
            failures += 1
            log.warning("listening for queued jobs failed (%s); polling until it reconnects", exc)
            stop.wait(min(2.0 * failures, 30.0))


def run(engine: Engine, settings: Settings, *, until_empty: bool = False, stop_timeout: float = 30.0,
        on_captions: Callable[[list[int]], None] | None = None, install_signals: bool = True,
        stop: threading.Event | None = None) -> RunSummary:
    """Caption queued jobs until stopped (SIGTERM/SIGINT: finish the batch in hand, up to
    `stop_timeout`, then give unfinished jobs back) or, with `until_empty`, until none is runnable."""
    from catalogcap.worker import Worker  # here, not above: `status` lists workers without the captioner's imports

    stop = stop or threading.Event()
    wake = threading.Event()
    owner = new_owner("worker")
    worker = Worker(engine, settings, owner=owner, on_captions=on_captions)
    recovered = recover_stale(engine)
    if recovered:
        log.info("requeued %d job(s) left running by a stopped process on this host", recovered)
    heartbeat = Heartbeat(engine, owner, lambda: worker.captioned_total)
    heartbeat.start()
    if install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: (stop.set(), wake.set()))

    failure: list[BaseException] = []

    def drain() -> None:
        def count(batch: Any) -> None:
            worker.captioned_total += batch.captioned

        try:
            worker.drain(progress=count, stop=stop)
        except BaseException as exc:  # re-raised in the calling thread: a model that will not load...
            failure.append(exc)
        finally:
            stop.set()

    loop = drain if until_empty else lambda: worker.run_until(stop, wake)
    threads = [threading.Thread(target=loop, name="worker", daemon=True),
               threading.Thread(target=heartbeat.run, args=(stop,), name="heartbeat", daemon=True),
               threading.Thread(target=listen, args=(engine, wake, stop), name="listen", daemon=True)]
    for thread in threads:
        thread.start()
    log.info("worker %s started (batch size %d)", owner, settings.batch_size)
    while not stop.wait(0.5):
        if not threads[0].is_alive():
            break
    stop.set()
    wake.set()
    threads[0].join(stop_timeout)
    released = 0
    if threads[0].is_alive():
        released = release(engine, owner)
        log.warning("stopped before the batch in hand finished; released %d job(s)", released)
    else:
        worker.close()
    deadline = time.monotonic() + 5.0
    for thread in threads[1:]:
        thread.join(max(deadline - time.monotonic(), 0))
    heartbeat.beat(stopped=True)
    log.info("worker %s stopped after captioning %d image(s)", owner, worker.captioned_total)
    if failure:
        raise failure[0]
    return RunSummary(owner=owner, captioned=worker.captioned_total, released=released)
