"""One daemon per home folder: an exclusive `flock` on home/watch.lock holding our pid.

The kernel drops the lock when the process dies, however it dies (SIGKILL included), so
a stale lock file from a dead daemon is simply taken over; a live one is refused.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from catalogcap.errors import CatalogcapError

LOCK_NAME = "watch.lock"


class AlreadyRunning(CatalogcapError):
    pass


class DaemonLock:
    def __init__(self, home: Path) -> None:
        self.path = home / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = holder_pid(self.path.parent)
            raise AlreadyRunning(
                f"a catalogcap watch daemon (pid {pid or 'unknown'}) already runs on {self.path.parent};"
                " stop it first or use another CATALOGCAP_HOME"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DaemonLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder_pid(home: Path) -> int | None:
    """The pid of the live daemon on `home`, or None when no daemon holds the lock."""
    path = home / LOCK_NAME
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
