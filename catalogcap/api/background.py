"""The captioning worker thread `catalogcap serve` runs when no daemon does the captioning.

It claims from the same database queue as `watch`, so both may run at once: a claim is
atomic and each job goes to exactly one of them. Uploads wake it up at once.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Engine

from catalogcap.settings import Settings
from catalogcap.store.queue import new_owner
from catalogcap.worker import Worker, WorkerThread


class BackgroundWorker(WorkerThread):
    def __init__(self, engine: Engine, settings: Settings, *,
                 on_captions: Callable[[list[int]], None] | None = None, worker: Worker | None = None,
                 stop_timeout: float = 30.0) -> None:
        self.engine = engine
        self.settings = settings
        self.owner = worker.owner if worker is not None else new_owner("api")
        super().__init__(worker or Worker(engine, settings, owner=self.owner, on_captions=on_captions),
                         name="catalogcap-api-worker", stop_timeout=stop_timeout)

    @property
    def captioned(self) -> int:
        """Images this server's worker captioned since it started."""
        return self.worker.captioned_total

    @property
    def errors(self) -> int:
        return self.worker.errors
