"""`catalogcap watch`: reconcile, then watch folders and caption what arrives, through crashes.

Threads: watchdog's observer feeds an `ArrivalHandler`; the `StabilityTracker` thread
registers files once they settle (intake writes the job in the same transaction); the
worker thread claims batches from the database queue and commits captions and job
completion together. Nothing lives only in memory: a SIGKILL at any point leaves the
database consistent, and the next start recovers running jobs and rescans the folders.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from catalogcap import images
from catalogcap.errors import CatalogcapError
from catalogcap.intake import Registered, display, mark_path_missing, register_file, scan
from catalogcap.products.sidecar import is_sidecar, sync_image, sync_sidecar
from catalogcap.settings import Settings
from catalogcap.store.queue import new_owner, recover_stale
from catalogcap.watch.arrivals import ArrivalHandler, StabilityTracker
from catalogcap.watch.lock import DaemonLock
from catalogcap.watch.schedule import TrainingScheduler
from catalogcap.worker import Worker, WorkerThread

log = logging.getLogger("catalogcap.watch")


class Daemon:
    def __init__(self, engine: Engine, settings: Settings, folders: list[Path], *,
                 stop_timeout: float = 30.0, worker: Worker | None = None, on_captions=None,
                 schedule_training: bool = True, caption: bool = True) -> None:
        if not folders:
            raise CatalogcapError("no folders to watch: give DIR arguments or set watch.folders in the config")
        missing = [str(f) for f in folders if not f.is_dir()]
        if missing:
            raise CatalogcapError(f"cannot watch {', '.join(missing)}: not a folder")
        self.engine = engine
        self.settings = settings
        self.folders = [f.absolute() for f in folders]
        self.stop_timeout = stop_timeout
        self.stop_event = threading.Event()
        self.work_event = threading.Event()
        self.owner = new_owner("watch")
        self.worker = worker or Worker(engine, settings, owner=self.owner, on_captions=on_captions)
        self.owner = self.worker.owner
        self.worker_thread = WorkerThread(self.worker, name="worker", stop_timeout=stop_timeout,
                                          stop_event=self.stop_event, wake_event=self.work_event)
        self.tracker = StabilityTracker(settings.watch.quiet_seconds, self._arrived)
        self.lock = DaemonLock(settings.home)
        self.schedule_training = schedule_training
        self.caption = caption  # False: register and queue only, `catalogcap worker` captions
        self._not_ready: dict[Path, tuple[tuple[int, int], float]] = {}  # signature, first seen cut off

    # -- arrivals ---------------------------------------------------------------------
    def _ready(self, path: Path) -> bool:
        """False while `path` looks cut off and has not stayed unchanged for `watch.incomplete_seconds`
        (the tracker then offers it again after a longer quiet period or its next change)."""
        watch = self.settings.watch
        try:
            stat = os.stat(path)
        except OSError:
            return True  # gone or unreadable: register_file says which
        reason = images.incomplete(path, max_pixels=self.settings.max_pixels,
                                   max_bytes=int(self.settings.max_file_mb * 2**20))
        if reason is None:
            self._not_ready.pop(path, None)
            return True
        signature, now = (stat.st_size, stat.st_mtime_ns), time.monotonic()
        seen = self._not_ready.get(path)
        if seen is None or seen[0] != signature:
            seen = self._not_ready[path] = (signature, now)
            log.info("%s: not ready (%s); waiting for the writer", display(path), reason)
        still = now - seen[1]
        if still >= watch.incomplete_seconds:
            self._not_ready.pop(path, None)
            log.warning("%s: still %s after %.0f s unchanged; taking it as it is", display(path), reason, still)
            return True
        self.tracker.defer(path, min(max(4 * watch.quiet_seconds, 2.0), watch.incomplete_seconds - still))
        return False

    def _sidecar(self, path: Path) -> bool:
        """A product sidecar (`NAME.json`) appeared, changed or went away: its row follows it."""
        if not is_sidecar(path, self.settings):
            return False
        try:
            for outcome in sync_sidecar(self.engine, path, self.settings):
                if outcome != "unchanged":
                    log.info("%s: product data %s", display(path), outcome)
        except Exception:
            log.exception("could not read the sidecar %s; skipped (a rescan or restart tries again)", display(path))
        return True

    def _arrived(self, path: Path) -> None:
        shown = display(path)
        if self._sidecar(path):
            return
        if not self._ready(path):
            return
        try:
            item = register_file(self.engine, path, self.settings)
        except sa.exc.OperationalError as exc:  # the database is busy or went away for a moment
            log.warning("could not register %s (%s); will retry", shown, exc)
            self.tracker.touch(path)
            return
        except Exception:  # a bug, not a passing condition: retrying would loop forever
            log.exception("could not register %s; skipped (a rescan or restart tries again)", shown)
            return
        if item.outcome == "rejected":
            log.warning("%s: rejected: %s", shown, item.reason)
        elif item.outcome != "vanished":
            log.info("%s: %s", shown, item.outcome)
            if item.asset_id is not None:
                try:
                    sync_image(self.engine, item.path, item.asset_id, self.settings)
                except Exception:
                    log.exception("could not read the sidecars of %s", shown)
        self.work_event.set()

    @staticmethod
    def _reconciled(item: Registered) -> None:
        if item.outcome == "rejected":
            log.warning("%s: rejected: %s", display(item.path), item.reason)

    def _gone(self, path: Path) -> None:
        self._not_ready.pop(path, None)
        if self._sidecar(path):
            return
        try:
            if mark_path_missing(self.engine, path):
                log.info("%s: gone (captions kept)", display(path))
        except Exception:
            log.exception("could not mark %s missing", display(path))

    # -- lifecycle ---------------------------------------------------------------------
    def reconcile(self) -> None:
        recovered = recover_stale(self.engine)
        if recovered:
            log.info("requeued %d job(s) left running by a previous process", recovered)
        report = scan(self.engine, self.folders, self.settings, progress=self._reconciled, stop=self.stop_event,
                      progress_unchanged=False)  # only rejections are logged
        for folder in report.unreadable_folders:
            log.warning("%s: %s", folder["path"], folder["reason"])
        log.info("reconciled %d file(s): %s, %d missing", report.found,
                 ", ".join(f"{k} {v}" for k, v in report.outcomes.items() if v), report.missing)
        self.work_event.set()

    def _observer(self):
        if self.settings.watch.polling:
            return PollingObserver(timeout=self.settings.watch.poll_interval)
        return Observer()

    def run(self, *, install_signals: bool = True, ready: threading.Event | None = None) -> int:
        self.lock.acquire()
        observer = self._observer()
        threads: list[threading.Thread] = []
        try:
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, lambda *_: self.stop())
            handler = ArrivalHandler(self.tracker, self.settings.watch, self._gone)
            for folder in self.folders:
                observer.schedule(handler, str(folder), recursive=True)
            observer.start()  # watch first, so nothing arriving during reconciliation is missed
            self.reconcile()
            threads = [
                threading.Thread(target=self.tracker.run, args=(self.stop_event,), name="arrivals", daemon=True),
            ]
            if self.schedule_training:
                scheduler = TrainingScheduler(self.engine, self.settings, self.stop_event)
                log.info("next training round %s", scheduler.next_at.isoformat(timespec="minutes"))
                threads.append(threading.Thread(target=scheduler.run, name="training-schedule", daemon=True))
            for thread in threads:
                thread.start()
            if self.caption:
                self.worker_thread.start(recover=False)  # reconcile recovered the stale jobs already
            log.info("watching %s (%s observer%s)", ", ".join(map(str, self.folders)),
                     "polling" if self.settings.watch.polling else "native",
                     "" if self.caption else "; queueing only, `catalogcap worker` captions")
            if ready is not None:
                ready.set()
            while not self.stop_event.wait(0.5):
                pass
        finally:
            self.stop_event.set()
            self.work_event.set()
            observer.stop()
            deadline = time.monotonic() + self.stop_timeout
            for thread in threads:
                thread.join(max(deadline - time.monotonic(), 0))
            # past the deadline the batch in hand goes back to the queue (its captions were not committed)
            self.worker_thread.stop(timeout=max(deadline - time.monotonic(), 0))
            observer.join(5)
            self.lock.release()
            log.info("stopped")
        return 0

    def stop(self) -> None:
        self.stop_event.set()
        self.work_event.set()
