"""The daemon's nightly training round, on a cron schedule, in a separate process.

Training runs as `catalogcap train --trigger schedule` in a child process at lower CPU
priority, so the daemon keeps captioning while it trains (on a single GPU too small for
both, the child simply competes for memory; see README "Training"). When the child
promotes an adapter, the worker notices between batches and switches without a restart.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

from croniter import croniter
from sqlalchemy.engine import Engine

from catalogcap.errors import SettingsError
from catalogcap.settings import Settings

log = logging.getLogger("catalogcap.schedule")


def next_run(schedule: str, after: datetime | None = None) -> datetime:
    """The next time the cron expression fires (local time, timezone-aware)."""
    if not croniter.is_valid(schedule):
        raise SettingsError(f"setting 'training.schedule' has bad value {schedule!r}: not a cron expression "
                            "(five fields, e.g. '0 2 * * *' for 02:00 every night)")
    base = after or datetime.now().astimezone()
    return croniter(schedule, base).get_next(datetime)


def train_command(settings: Settings) -> list[str]:
    return [sys.executable, "-m", "catalogcap", "--home", str(settings.home), "train", "--json",
            "--trigger", "schedule"]


def train_environment(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """The training child's environment: ours, plus every setting the daemon got on its command
    line (`--model`, `--database-url`, `--set ...`) as a `CATALOGCAP_*` variable, so the child
    trains the same model on the same store as the daemon."""
    from catalogcap.settings import _flatten, provenance

    env = dict(os.environ if base is None else base)
    env["CATALOGCAP_HOME"] = str(settings.home)
    values = _flatten(settings.model_dump(mode="json"))
    for key, source in provenance(settings).items():
        if source != "command line" or key == "home" or key not in values:
            continue
        value = values[key]
        name = "CATALOGCAP_" + key.upper().replace(".", "__")
        env[name] = value if isinstance(value, str) else json.dumps(value)
    return env


class TrainingScheduler:
    def __init__(self, engine: Engine, settings: Settings, stop: threading.Event) -> None:
        self.engine = engine
        self.settings = settings
        self.stop = stop
        self.next_at = next_run(settings.training.schedule)

    def due_round(self) -> int | None:
        """Start a round if enough new reviews exist; returns the child's exit code."""
        from catalogcap.training.round import plan

        data = plan(self.engine, self.settings)
        needed = self.settings.training.min_new_corrections
        if data.new_corrections < needed:
            log.info("scheduled training skipped: %d new reviewed caption(s), need %d", data.new_corrections,
                     needed)
            return None
        logs = self.settings.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        out = logs / f"train-{datetime.now():%Y%m%d-%H%M%S}.log"
        log.info("scheduled training round starting (log %s)", out)
        with out.open("w", encoding="utf-8") as handle:
            child = subprocess.Popen(train_command(self.settings), stdout=handle, stderr=subprocess.STDOUT,
                                     env=train_environment(self.settings),
                                     preexec_fn=lambda: os.nice(10))
            while child.poll() is None:
                if self.stop.wait(1.0):
                    child.terminate()  # the round is resumable with `catalogcap train --resume`
                    child.wait(30)
        log.info("scheduled training round finished with exit code %s (see %s)", child.returncode, Path(out))
        return child.returncode

    def run(self) -> None:
        while not self.stop.is_set():
            delay = (self.next_at - datetime.now().astimezone()).total_seconds()
            if delay > 0:
                self.stop.wait(min(delay, 60.0))
                continue
            try:
                self.due_round()
            except Exception:
                log.exception("scheduled training round failed; the daemon carries on")
            self.next_at = next_run(self.settings.training.schedule)
