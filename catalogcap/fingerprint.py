"""Content fingerprints: sha256 of a file's bytes, streamed so large files never sit in memory twice.

Only regular files are read: a FIFO would block the reader forever and a device
(`/dev/zero` behind a symlink) never ends, so both are refused before the first read,
and no more than the size the file had when it was opened is ever read.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

CHUNK = 1 << 20


class NotRegularFile(OSError):
    """A FIFO, socket, device or folder where an image file was expected."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(errno.EINVAL, "not a regular file", str(path))


def fingerprint_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_regular(path: Path | str) -> int:
    """A read-only descriptor of `path`, which must be a regular file (never blocks on a FIFO)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def fingerprint_file(path: Path | str) -> str:
    """sha256 of a regular file, read up to the size it had when opened; `NotRegularFile` otherwise."""
    digest = hashlib.sha256()
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as handle:
        left = os.fstat(fd).st_size
        while left > 0 and (chunk := handle.read(min(CHUNK, left))):
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()
