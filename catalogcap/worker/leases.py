"""Keeping a batch's job leases alive while it runs, so a slow batch never looks dead."""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from sqlalchemy.engine import Engine

from catalogcap.store.queue import renew

log = logging.getLogger("catalogcap.worker")


class LeaseKeeper:
    """A context: renews `job_ids`' leases every third of the lease until the block ends."""

    def __init__(self, engine: Engine, owner: str, job_ids: list[int], lease_seconds: float) -> None:
        self.engine, self.owner, self.job_ids, self.lease = engine, owner, list(job_ids), lease_seconds
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="catalogcap-lease", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(self.lease / 3):
            try:
                renew(self.engine, self.owner, self.job_ids, lease_seconds=self.lease)
            except Exception as exc:  # the next renewal or the batch's own commit will tell
                log.warning("could not renew the leases of %d job(s): %s", len(self.job_ids), exc)
