"""The training scheduler: when it fires, how it starts and stops its child."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from catalogcap.errors import SettingsError
from catalogcap.watch.schedule import NICENESS, next_run, start_child, stop_child
from tests.factories import poll

UTC = timezone.utc


def test_next_run_follows_the_cron_expression() -> None:
    after = datetime(2026, 3, 2, 1, 59, 30, tzinfo=UTC)
    assert next_run("0 2 * * *", after) == datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    assert next_run("0 2 * * *", datetime(2026, 3, 2, 2, 0, tzinfo=UTC)) == datetime(2026, 3, 3, 2, 0, tzinfo=UTC)
    assert next_run("*/15 * * * *", after) == datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    assert next_run("0 3 * * 0", after).weekday() == 6  # Sunday
    soon = next_run("* * * * *")
    assert soon.tzinfo is not None and timedelta(0) < soon - datetime.now().astimezone() <= timedelta(minutes=1)


@pytest.mark.parametrize("bad", ["", "every night", "61 2 * * *", "0 2 * *"])
def test_a_bad_schedule_names_the_setting(bad: str) -> None:
    with pytest.raises(SettingsError, match=r"training\.schedule"):
        next_run(bad)


def _child(code: str, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / "child.log"
    ready = tmp_path / "ready"
    script = f"import pathlib, signal, time\n{code}\npathlib.Path({str(ready)!r}).touch()\ntime.sleep(60)\n"
    with log.open("w") as out:
        child = start_child([sys.executable, "-c", script], out, dict(os.environ))
    def started() -> bool:
        assert child.poll() is None, log.read_text()
        return ready.exists()

    poll(started, 30, "the child to start")
    return child, log


def test_the_child_runs_in_its_own_session_at_lower_priority(tmp_path: Path) -> None:
    child, _ = _child("", tmp_path)
    try:
        assert os.getsid(child.pid) == child.pid != os.getsid(0)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == min(os.getpriority(os.PRIO_PROCESS, 0) + NICENESS, 19)
    finally:
        assert stop_child(child, 10) == -15


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    child, _ = _child("signal.signal(signal.SIGTERM, signal.SIG_IGN)", tmp_path)
    started = time.monotonic()
    assert stop_child(child, 0.5) == -9
    assert child.poll() == -9 and time.monotonic() - started < 10
