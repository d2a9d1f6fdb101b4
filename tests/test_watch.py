"""The watch daemon with real watchdog observers on temp folders and real subprocesses."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import select

from catalogcap.settings import load_settings
from catalogcap.store.database import create_store_engine, read_session
from catalogcap.store.models import Asset, AssetPath, Caption, Job
from catalogcap.watch.daemon import Daemon
from catalogcap.watch.lock import holder_pid
from tests.conftest import make_image
from tests.factories import poll

COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "pink"]


def _fast(monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    monkeypatch.setenv("CATALOGCAP_WATCH__QUIET_SECONDS", "0.5")
    monkeypatch.setenv("CATALOGCAP_QUEUE__MAX_WAIT_SECONDS", "0.2")
    monkeypatch.setenv("CATALOGCAP_QUEUE__RETRY_BACKOFF_SECONDS", "0.1")
    monkeypatch.setenv("CATALOGCAP_BATCH_SIZE", "32")
    monkeypatch.setenv("CATALOGCAP_GENERATION__ALT_TEXT__MAX_NEW_TOKENS", "3")
    monkeypatch.setenv("CATALOGCAP_GENERATION__DESCRIPTION__MAX_NEW_TOKENS", "3")
    monkeypatch.setenv("CATALOGCAP_GENERATION__DESCRIPTION__MIN_NEW_TOKENS", "1")
    monkeypatch.setenv("CATALOGCAP_GENERATION__DESCRIPTION__NUM_BEAMS", "1")
    monkeypatch.setenv("CATALOGCAP_GENERATION__ALT_TEXT__NUM_BEAMS", "1")
    for key, value in extra.items():
        monkeypatch.setenv(key, value)


def _unique_image(path: Path, n: int) -> Path:
    return make_image(path, COLOURS[n % len(COLOURS)], size=(40 + n % 50, 30 + n // 50))


def _burst(source: Path, inbox: Path, count: int) -> list[str]:
    """Files arrive three ways at once: copy, write-then-rename, and mv from a staging folder."""
    staging = inbox.parent / "staging"
    staging.mkdir(exist_ok=True)
    names = []
    for n in range(count):
        _unique_image(source / f"p{n:04d}.jpg", n)
    def copy(ns):
        for n in ns:
            shutil.copyfile(source / f"p{n:04d}.jpg", inbox / f"copy-{n:04d}.jpg")
    def rename(ns):
        for n in ns:
            tmp = inbox / f".rename-{n:04d}.jpg.Xa81Zq"  # rsync-style temp name
            shutil.copyfile(source / f"p{n:04d}.jpg", tmp)
            os.rename(tmp, inbox / f"rename-{n:04d}.jpg")
    def move(ns):
        for n in ns:
            shutil.copyfile(source / f"p{n:04d}.jpg", staging / f"mv-{n:04d}.jpg")
            shutil.move(staging / f"mv-{n:04d}.jpg", inbox / f"mv-{n:04d}.jpg")
    thirds = [range(0, count, 3), range(1, count, 3), range(2, count, 3)]
    threads = [threading.Thread(target=fn, args=(ns,)) for fn, ns in zip((copy, rename, move), thirds)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    names = sorted(p.name for p in inbox.iterdir())
    return names




def _captioned_once(engine, expected: int) -> None:
    with read_session(engine) as session:
        assets = session.exec(select(Asset)).all()
        assert len(assets) == expected
        done = dict(session.execute(select(Job.asset_id, sa.func.count()).where(Job.state == "done")
                                    .group_by(Job.asset_id)).all())
        assert all(done.get(a.id) == 1 for a in assets), "every asset has exactly one finished job"
        per_asset = dict(session.execute(select(Caption.asset_id, sa.func.count()).group_by(Caption.asset_id)).all())
        assert all(per_asset.get(a.id) == 2 for a in assets)
        assert session.execute(select(sa.func.count()).select_from(Job).where(Job.state != "done")).scalar_one() == 0
        paths = session.exec(select(AssetPath.path)).all()
        assert not any(Path(p).name.startswith(".") for p in paths), "temp names never become assets"


def _settled(engine, daemon) -> bool:
    """Nothing left that could still produce a job: no file waiting to settle, no job queued or running."""
    with read_session(engine) as session:
        busy = session.execute(select(sa.func.count()).select_from(Job).where(Job.state != "done")).scalar_one()
    return busy == 0 and len(daemon.tracker) == 0


def _done_count(engine) -> int:
    with read_session(engine) as session:
        return session.execute(select(sa.func.count()).select_from(Job).where(Job.state == "done")).scalar_one()


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


def _start_in_process(settings, folder: Path):
    engine = create_store_engine(settings.db_url)
    daemon = Daemon(engine, settings, [folder], stop_timeout=20)
    ready = threading.Event()
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False, "ready": ready}, daemon=True)
    thread.start()
    assert ready.wait(60)
    return engine, daemon, thread


@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "polling"])
def test_burst_of_arrivals_captioned_exactly_once(home, inbox, tmp_path, monkeypatch, polling) -> None:
    _fast(monkeypatch, CATALOGCAP_WATCH__POLLING=str(polling).lower(), CATALOGCAP_WATCH__POLL_INTERVAL="0.3")
    count = 300 if not polling else 60
    engine, daemon, thread = _start_in_process(load_settings(), inbox)
    try:
        names = _burst(tmp_path / "source", inbox, count)
        assert len(names) == count
        poll(lambda: _done_count(engine) >= count, 240, f"{count} captioned images")
        poll(lambda: _settled(engine, daemon), 30, "the daemon to settle")
        _captioned_once(engine, count)
    finally:
        daemon.stop()
        thread.join(30)
    assert not thread.is_alive()


def test_slow_writer_is_taken_once_after_it_completes(home, inbox, tmp_path, monkeypatch) -> None:
    _fast(monkeypatch, CATALOGCAP_WATCH__QUIET_SECONDS="1.5")
    data = _unique_image(tmp_path / "big.png", 7).read_bytes()
    data += b"\0" * 0  # complete PNG
    engine, daemon, thread = _start_in_process(load_settings(), inbox)
    try:
        target = inbox / "slow.png"
        with target.open("wb") as handle:
            step = max(len(data) // 6, 1)
            for i in range(0, len(data), step):
                handle.write(data[i : i + step])
                handle.flush()
                time.sleep(0.6)  # 6 chunks over ~3.6 s, each gap shorter than the quiet period
        poll(lambda: _done_count(engine) >= 1, 60, "the slow file to be captioned")
        poll(lambda: _settled(engine, daemon), 30, "the daemon to settle")
        with read_session(engine) as session:
            assets = session.exec(select(Asset)).all()
            jobs = session.exec(select(Job)).all()
        import hashlib

        assert len(assets) == 1 and assets[0].fingerprint == hashlib.sha256(data).hexdigest()
        assert len(jobs) == 1 and jobs[0].state == "done" and jobs[0].attempts == 1
    finally:
        daemon.stop()
        thread.join(30)


def test_delete_before_processing_and_temp_names(home, inbox, tmp_path, monkeypatch) -> None:
    _fast(monkeypatch, CATALOGCAP_WATCH__QUIET_SECONDS="1.0")
    engine, daemon, thread = _start_in_process(load_settings(), inbox)
    try:
        gone = _unique_image(inbox / "gone.jpg", 1)
        gone.unlink()  # deleted before it settled
        make_image(inbox / "download.jpg.crdownload", "blue", fmt="JPEG")
        make_image(inbox / "~$draft.jpg", "green")
        _unique_image(inbox / "kept.jpg", 4)
        poll(lambda: _done_count(engine) >= 1, 60, "kept.jpg")
        poll(lambda: _settled(engine, daemon), 30, "the daemon to settle")
        with read_session(engine) as session:
            paths = [Path(p).name for p in session.exec(select(AssetPath.path)).all()]
            failed = session.exec(select(Job).where(Job.state != "done")).all()
        assert paths == ["kept.jpg"] and failed == []
        # a captioned file deleted later: asset marked missing, captions kept
        (inbox / "kept.jpg").unlink()
        def missing() -> bool:
            with read_session(engine) as session:
                return session.exec(select(Asset)).one().missing_since is not None
        poll(missing, 20, "the deleted file to be marked missing")
        with read_session(engine) as session:
            assert len(session.exec(select(Caption)).all()) == 2
    finally:
        daemon.stop()
        thread.join(30)


# -- real subprocesses ------------------------------------------------------------------

def _spawn(home: Path, folder: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-m", "catalogcap", "watch", str(folder)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_ready(home: Path, proc: subprocess.Popen, after: int = 0) -> None:
    log = home / "logs" / "watch.log"
    def ready() -> bool:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        return log.exists() and log.read_text().count("watching") > after
    poll(ready, 120, "the daemon to start")


def test_kill_9_mid_burst_then_restart_captions_everything_once(home, inbox, tmp_path, monkeypatch) -> None:
    _fast(monkeypatch, CATALOGCAP_BATCH_SIZE="8")
    settings = load_settings()
    proc = _spawn(home, inbox)
    try:
        _wait_ready(home, proc)
        count = 120
        _burst(tmp_path / "source", inbox, count)
        engine = create_store_engine(settings.db_url)
        poll(lambda: _done_count(engine) >= 16, 120, "some captions before the kill")
        proc.send_signal(signal.SIGSTOP)  # frozen: what is read now is what the kill interrupts
        assert _done_count(engine) < count, "the daemon finished the burst before it could be stopped"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        more = [_unique_image(inbox / f"while-down-{n}.png", 500 + n) for n in range(5)]  # arrive while down
        proc = _spawn(home, inbox)
        _wait_ready(home, proc, after=1)
        poll(lambda: _done_count(engine) >= count + len(more), 180, "everything captioned after restart")
        _captioned_once(engine, count + len(more))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigterm_exits_zero_and_second_daemon_is_refused(home, inbox, tmp_path, monkeypatch) -> None:
    _fast(monkeypatch)
    settings = load_settings()
    proc = _spawn(home, inbox)
    try:
        _wait_ready(home, proc)
        assert holder_pid(home) == proc.pid
        second = _spawn(home, inbox)
        _out, err = second.communicate(timeout=120)
        assert second.returncode == 1
        assert f"pid {proc.pid}" in err and "already runs" in err
        _burst(tmp_path / "source", inbox, 30)
        engine = create_store_engine(settings.db_url)
        poll(lambda: _done_count(engine) >= 1, 120, "captioning to be under way")
        proc.send_signal(signal.SIGTERM)  # mid-burst: the batch in hand finishes or goes back to the queue
        assert proc.wait(60) == 0
        with read_session(engine) as session:
            running = session.exec(select(Job).where(Job.state == "running")).all()
        assert running == []
        assert holder_pid(home) is None
    finally:
        if proc.poll() is None:
            proc.kill()
