"""The captioning thread of a long-running process (`watch` and `serve` both run this one).

It requeues jobs left running by a dead process, loads the model before the first job,
then captions until stopped; `wake()` cuts the idle wait short when work arrives. A stop
that outlasts its timeout gives the batch in hand back to the queue.
"""

from __future__ import annotations

import logging
import threading

from catalogcap.store.queue import recover_stale, release
from catalogcap.worker.batch import Worker

log = logging.getLogger("catalogcap.worker")


class WorkerThread:
    def __init__(self, worker: Worker, *, name: str = "catalogcap-worker", stop_timeout: float = 30.0,
                 stop_event: threading.Event | None = None, wake_event: threading.Event | None = None) -> None:
        self.worker = worker
        self.name = name
        self.stop_timeout = stop_timeout
        self.stop_event = stop_event or threading.Event()
        self.wake_event = wake_event or threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, *, recover: bool = True) -> None:
        if recover:
            recovered = recover_stale(self.worker.engine)
            if recovered:
                log.info("requeued %d job(s) left running by a process that is gone", recovered)
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self.wake_event.set()

    def stop(self, timeout: float | None = None) -> int:
        """Stop and wait up to `timeout` (default stop_timeout); how many jobs went back to the queue."""
        self.stop_event.set()
        self.wake_event.set()
        if self._thread is None:
            return 0
        self._thread.join(self.stop_timeout if timeout is None else timeout)
        if self._thread.is_alive():
            released = release(self.worker.engine, self.worker.owner)
            log.warning("stopped before the batch in hand finished; released %d job(s)", released)
            return released
        self.worker.close()
        return 0

    def _run(self) -> None:
        try:
            self.worker.captioner()  # load the model now, not on the first job
        except Exception:
            log.exception("cannot load the captioner; jobs stay queued until it loads")
        self.worker.run_until(self.stop_event, self.wake_event)
