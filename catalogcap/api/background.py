"""The captioning worker thread `catalogcap serve` runs when no daemon does the captioning.

It claims from the same database queue as `watch`, so both may run at once: a claim is
atomic and each job goes to exactly one of them. Uploads wake it up at once.
"""

from __future__ import annotations

import logging
import threading

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from catalogcap.settings import Settings
from catalogcap.store.database import read_session, write_session
from catalogcap.store.models import Job
from catalogcap.store.queue import new_owner, recover_stale, runnable_count
from catalogcap.worker import Worker

log = logging.getLogger("catalogcap.api.worker")


class BackgroundWorker:
    def __init__(self, engine: Engine, settings: Settings, *, on_captions=None, worker: Worker | None = None,
                 stop_timeout: float = 30.0) -> None:
        self.engine = engine
        self.settings = settings
        self.owner = new_owner("api")
        self.worker = worker or Worker(engine, settings, owner=self.owner, on_captions=on_captions)
        self.stop_timeout = stop_timeout
        self.stop_event = threading.Event()
        self.work_event = threading.Event()
        self.captioned = 0
        self.errors = 0
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        recovered = recover_stale(self.engine)
        if recovered:
            log.info("requeued %d job(s) left running by a process that is gone", recovered)
        self._thread = threading.Thread(target=self._run, name="catalogcap-api-worker", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self.work_event.set()

    def stop(self) -> None:
        self.stop_event.set()
        self.work_event.set()
        if self._thread is None:
            return
        self._thread.join(self.stop_timeout)
        if self._thread.is_alive():
            log.warning("stopped before the batch in hand finished; released %d job(s)", self._release())
        else:
            self.worker.close()

    def _run(self) -> None:
        try:
            self.worker.captioner()  # load the model now, not on the first upload
        except Exception:
            log.exception("cannot load the captioner; jobs stay queued until it loads")
        max_wait = self.settings.queue.max_wait_seconds
        while not self.stop_event.is_set():
            try:
                self.work_event.clear()  # before counting, so a wake-up during the count is not lost
                with read_session(self.engine) as session:
                    queued = runnable_count(session)
                if queued == 0:
                    self.work_event.wait(1.0)
                    continue
                if queued < self.settings.batch_size and max_wait > 0:
                    self.stop_event.wait(max_wait)  # let a burst of uploads fill the batch
                result = self.worker.run_batch()
                self.captioned += result.captioned
                if result.claimed:
                    log.info("captioned %d, retrying %d, failed %d", result.captioned, result.retrying,
                             result.failed)
            except Exception:
                self.errors += 1
                log.exception("worker batch failed; continuing")
                self.stop_event.wait(min(2.0 * self.errors, 30.0))

    def _release(self) -> int:
        """Give our running jobs back to the queue (their captions were not committed)."""
        with write_session(self.engine) as session:
            result = session.execute(
                sa.update(Job).where(Job.lease_owner == self.owner, Job.state == "running")
                .values(state="pending", lease_owner=None, lease_expires=None, attempts=Job.attempts - 1)
            )
        return result.rowcount
