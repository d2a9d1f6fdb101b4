"""From file-system events to registered files: arrival rules.

watchdog reports raw events (created, modified, moved, closed, deleted). A file is taken
only once it is stable: its size and mtime unchanged for `quiet_seconds`, so a
half-copied TIFF is never read early. Temporary names (rsync's `.name.XXXXXX`, `*.part`,
`*.crdownload`, `~$*`, hidden files) never match, so the rename into place is the arrival.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from catalogcap.intake import display, matches
from catalogcap.settings import WatchSettings

log = logging.getLogger(__name__)


class StabilityTracker:
    """Paths seen recently, released to `on_stable` once size and mtime stop changing."""

    def __init__(self, quiet_seconds: float, on_stable: Callable[[Path], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet = quiet_seconds
        self.on_stable = on_stable
        self.clock = clock
        self._pending: dict[Path, tuple[int, int, float]] = {}
        self._quiet: dict[Path, float] = {}  # a longer quiet period for files that looked cut off
        self._lock = threading.Lock()
        self._wake = threading.Event()

    def touch(self, path: Path) -> None:
        with self._lock:
            self._pending[path] = (-1, -1, self.clock())
            self._quiet.pop(path, None)
        self._wake.set()

    def defer(self, path: Path, seconds: float) -> None:
        """Release `path` again once it has stayed unchanged for `seconds`, or `quiet_seconds`
        after its next change, whichever comes first."""
        try:
            stat = path.stat()
        except OSError:
            return
        with self._lock:
            self._pending[path] = (stat.st_size, stat.st_mtime_ns, self.clock())
            self._quiet[path] = seconds
        self._wake.set()

    def forget(self, path: Path) -> None:
        with self._lock:
            self._pending.pop(path, None)
            self._quiet.pop(path, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def check(self) -> list[Path]:
        """Stat every pending path once; return (and release) the stable ones."""
        now = self.clock()
        with self._lock:
            items = list(self._pending.items())
        ready: list[Path] = []
        for path, (size, mtime, since) in items:
            try:
                stat = path.stat()
            except OSError:  # renamed away or deleted before it settled
                self.forget(path)
                continue
            if (stat.st_size, stat.st_mtime_ns) != (size, mtime):
                with self._lock:
                    if path in self._pending:
                        self._pending[path] = (stat.st_size, stat.st_mtime_ns, now)
                        self._quiet.pop(path, None)  # it changed: the writer is back
                continue
            with self._lock:
                quiet = self._quiet.get(path, self.quiet)
            if now - since >= quiet:
                with self._lock:
                    if self._pending.get(path, (None,))[0] == size:
                        del self._pending[path]
                        self._quiet.pop(path, None)
                        ready.append(path)
        for path in ready:
            self.on_stable(path)
        return ready

    def run(self, stop: threading.Event, interval: float = 0.2) -> None:
        while not stop.is_set():
            try:
                self.check()
            except Exception:  # never let one bad path stop arrivals
                log.exception("arrival check failed; continuing")
            if not self._pending:
                self._wake.wait(1.0)
                self._wake.clear()
            else:
                stop.wait(min(interval, max(self.quiet / 4, 0.05)))


class ArrivalHandler(FileSystemEventHandler):
    """Feeds matching paths to the tracker; reports deletions and moves away."""

    def __init__(self, tracker: StabilityTracker, watch: WatchSettings,
                 on_gone: Callable[[Path], None]) -> None:
        self.tracker = tracker
        self.watch = watch
        self.on_gone = on_gone

    def _wanted(self, path: str) -> bool:
        """An image, or a product sidecar (`NAME.json`, not ignored), outside hidden folders."""
        p = Path(path)
        wanted = matches(p.name, self.watch.include, self.watch.ignore) or (
            p.name.lower().endswith(".json") and matches(p.name, ["*.json"], self.watch.ignore))
        return wanted and not any(part.startswith(".") for part in p.parent.parts[-3:])

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            if event.event_type == "moved" and event.dest_path:
                self._walk(Path(str(event.dest_path)))  # a folder renamed into place brings its files
            return
        kind = event.event_type
        src = str(event.src_path)
        if kind in ("created", "modified", "closed"):
            if self._wanted(src):
                self.tracker.touch(Path(src))
        elif kind == "moved":
            dest = str(event.dest_path)
            self.tracker.forget(Path(src))
            if self._wanted(src):
                self.on_gone(Path(src))
            if self._wanted(dest):
                self.tracker.touch(Path(dest))
        elif kind == "deleted":
            self.tracker.forget(Path(src))
            if self._wanted(src):
                self.on_gone(Path(src))

    def _walk(self, folder: Path) -> None:
        def unreadable(exc: OSError) -> None:
            log.warning("%s: unreadable folder: %s; its images are not taken", display(exc.filename or folder),
                        exc.strerror or exc)

        for dirpath, _dirnames, filenames in os.walk(folder, onerror=unreadable):
            for name in filenames:
                if self._wanted(os.path.join(dirpath, name)):
                    self.tracker.touch(Path(dirpath) / name)
