"""The captioning worker: batches (batch.py), the active adapter's captioner (adapters.py),
lease renewal (leases.py), the long-running thread (thread.py), the captioner protocol
(captioner.py)."""

from catalogcap.worker.batch import BatchResult, Worker
from catalogcap.worker.thread import WorkerThread

__all__ = ["BatchResult", "Worker", "WorkerThread"]
