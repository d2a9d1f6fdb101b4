"""Logging for the CLI and the daemon: rich text on a terminal, or one JSON object per line.

A daemon meeting a lasting condition (a full disk, a database locked by someone else)
would log the same error on every retry; `OncePerCondition` lets a warning or error
through once per condition and a window, then says how many repeats it held back. A
handler that cannot write (stderr on a full disk) says so once, not once per record.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timezone

from catalogcap.settings import Settings

_configured = False
_VARYING = re.compile(r"\b[0-9a-f]{8,}\b|\d+")  # counts, ids, hashes: not part of what went wrong


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


class OncePerCondition(logging.Filter):
    """Pass each warning or error once per `window` seconds per condition: the same logger,
    message template and exception type and first line. Later repeats are counted and the
    count is added to the first one let through after the window."""

    MAX_CONDITIONS = 512

    def __init__(self, window: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window, self.clock = window, clock
        self._seen: OrderedDict[tuple[str, ...], list[float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def condition(record: logging.LogRecord) -> tuple[str, ...]:
        """What makes two records the same condition: the message and the exception's first line
        with their numbers and ids blanked (attempt 3 and attempt 4 of one failure are one)."""
        error = record.exc_info[1] if record.exc_info else None
        first_line = str(error).split("\n", 1)[0] if error is not None else ""
        try:
            message = record.getMessage()
        except Exception:  # a bad format string is logging's own error to report
            message = str(record.msg)
        return (record.name, str(record.levelno), _VARYING.sub("#", message), type(error).__name__,
                _VARYING.sub("#", first_line))

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key, now = self.condition(record), self.clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.window:
                seen[1] += 1
                return False
            held_back = int(seen[1]) if seen is not None else 0
            self._seen[key] = [now, 0]
            self._seen.move_to_end(key)
            while len(self._seen) > self.MAX_CONDITIONS:
                self._seen.popitem(last=False)
        if held_back:
            record.msg = f"{record.msg} [repeated {held_back} more time(s) in the last {self.window:.0f} s]"
        return True


class ReportOnce:
    """Mixin for handlers: a failing write (ENOSPC, a closed pipe) is reported once per error
    type, instead of a "--- Logging error ---" traceback for every record."""

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        key = (type(error).__name__, getattr(error, "errno", None))
        reported = self.__dict__.setdefault("_reported", set())
        if key in reported:
            return
        reported.add(key)
        try:
            sys.__stderr__.write(f"catalogcap: cannot write log records ({type(error).__name__}: {error});"
                                 " further failures of this kind are not reported\n")
            sys.__stderr__.flush()
        except Exception:  # stderr itself is what fails: nothing left to tell
            pass


class StreamHandler(ReportOnce, logging.StreamHandler):
    pass


def setup(settings: Settings) -> None:
    """Configure the root logger once (stderr; the daemon also writes home/logs/)."""
    global _configured
    if _configured:
        return
    _configured = True
    handler: logging.Handler
    if settings.log_format == "json" or not sys.stderr.isatty():
        handler = StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter() if settings.log_format == "json" else logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        from rich.logging import RichHandler

        class QuietRichHandler(ReportOnce, RichHandler):
            pass

        handler = QuietRichHandler(show_path=False, rich_tracebacks=False)
    handler.addFilter(OncePerCondition())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for noisy in ("alembic", "httpx", "urllib3", "watchdog", "PIL", "filelock", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))
