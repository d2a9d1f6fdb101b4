"""The captioning worker thread `catalogcap serve` runs when no daemon does the captioning.

It claims from the same database queue as `watch`, so both may run at once: a claim is
atomic and each job goes to exactly one of them. Uploads wake it up at once.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.engine import Engine

from catalogcap.settings import Settings
from catalogcap.store.queue import new_owner, recover_stale, release
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
        self._thread: threading.Thread | None = None

    @property
    def captioned(self) -> int:
        """Images this server's worker captioned since it started."""
        return self.worker.captioned_total

    @property
    def errors(self) -> int:
        return self.worker.errors

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
            released = release(self.engine, self.owner)
            log.warning("stopped before the batch in hand finished; released %d job(s)", released)
        else:
            self.worker.close()

    def _run(self) -> None:
        try:
            self.worker.captioner()  # load the model now, not on the first upload
        except Exception:
            log.exception("cannot load the captioner; jobs stay queued until it loads")
        self.worker.run_until(self.stop_event, self.work_event)

