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
from typing import IO

from croniter import croniter
from sqlalchemy.engine import Engine

from catalogcap.errors import SettingsError
from catalogcap.settings import Settings

log = logging.getLogger("catalogcap.schedule")
NICENESS = 10  # how much lower than the daemon the training child runs


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
        if value is None:  # unset (e.g. training.lr: searched); no environment variable can say "null"
            continue
        name = "CATALOGCAP_" + key.upper().replace(".", "__")
        env[name] = value if isinstance(value, str) else json.dumps(value)
    return env


def start_child(argv: list[str], output: IO[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start the training child in its own session at lower CPU priority.

    No `preexec_fn`: running Python between fork and exec in a threaded process (the daemon)
    can deadlock the child. The priority is lowered from here, once the child exists; the
    threads it starts later inherit it."""
    child = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        os.setpriority(os.PRIO_PROCESS, child.pid, os.getpriority(os.PRIO_PROCESS, 0) + NICENESS)
    except OSError as exc:  # the child already exited, or a platform without priorities: it still runs
        log.warning("could not lower the training child's priority: %s", exc)
    return child


def stop_child(child: subprocess.Popen[bytes], grace: float) -> int:
    """SIGTERM, then SIGKILL if the child is still running after `grace` seconds; its exit code."""
    child.terminate()
    try:
        return child.wait(grace)
    except subprocess.TimeoutExpired:
        log.warning("training child %d did not stop within %.0f s of SIGTERM; killing it", child.pid, grace)
        child.kill()
        return child.wait()


class TrainingScheduler:
    def __init__(self, engine: Engine, settings: Settings, stop: threading.Event, *,
                 poll_seconds: float = 1.0, stop_grace: float = 30.0) -> None:
        self.engine = engine
        self.settings = settings
        self.stop = stop
        self.poll_seconds = poll_seconds
        self.stop_grace = stop_grace
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
            child = start_child(train_command(self.settings), handle, train_environment(self.settings))
            while child.poll() is None:
                if self.stop.wait(self.poll_seconds):
                    stop_child(child, self.stop_grace)  # the round is resumable with `catalogcap train --resume`
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
