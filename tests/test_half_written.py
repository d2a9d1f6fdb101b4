"""Half-written files: never captioned early, one asset per final file, no orphan pending captions."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image
from sqlmodel import select

from catalogcap import images
from catalogcap.intake import register_file
from catalogcap.review import queue
from catalogcap.review.queue import Filters
from catalogcap.settings import load_settings
from catalogcap.status import store_status
from catalogcap.store.captions import save_model_captions
from catalogcap.store.database import create_store_engine, read_session, write_session
from catalogcap.store.models import Asset, AssetPath, Caption, Job
from catalogcap.watch.daemon import Daemon
from tests.conftest import make_image
from tests.factories import poll

ROOT = Path(__file__).resolve().parents[1]


def _photo(fmt: str, seed: int = 0, size: tuple[int, int] = (320, 240)) -> bytes:
    """A noisy picture (so it does not compress to almost nothing) in `fmt`."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()




def _fast(monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    values = {"CATALOGCAP_WATCH__QUIET_SECONDS": "0.5", "CATALOGCAP_QUEUE__MAX_WAIT_SECONDS": "0.1",
              "CATALOGCAP_QUEUE__RETRY_BACKOFF_SECONDS": "0.1", "CATALOGCAP_GENERATION__ALT_TEXT__NUM_BEAMS": "1",
              "CATALOGCAP_GENERATION__DESCRIPTION__NUM_BEAMS": "1", **extra}
    for key, value in values.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"])
def test_incomplete_spots_a_cut_off_file_of_each_format(tmp_path: Path, fmt: str) -> None:
    data = _photo(fmt)
    whole = tmp_path / f"whole.{fmt.lower()}"
    whole.write_bytes(data)
    assert images.incomplete(whole) is None
    for share in (0.25, 0.5, 0.9):
        cut = tmp_path / f"cut-{share}.{fmt.lower()}"
        cut.write_bytes(data[: int(len(data) * share)])
        assert images.incomplete(cut) is not None, (fmt, share)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert images.incomplete(empty) == "empty file"
    os.mkfifo(tmp_path / "fifo.jpg")
    assert images.incomplete(tmp_path / "fifo.jpg") is None  # not our question: intake rejects it


def _two_captions(engine, asset_id: int) -> None:
    with write_session(engine) as session:
        save_model_captions(session, asset_id, {"alt_text": "a shoe", "description": "a product photo of a shoe"},
                            model="m", adapter_id=None, generation={"alt_text": {}, "description": {}})


def test_a_new_version_supersedes_the_unreviewed_old_one(engine, settings, tmp_path: Path) -> None:
    path = tmp_path / "shoe.png"
    path.write_bytes(_photo("PNG", 1))
    first = register_file(engine, path, settings)
    _two_captions(engine, first.asset_id)
    path.write_bytes(_photo("PNG", 2))
    second = register_file(engine, path, settings)
    assert second.outcome == "changed" and second.asset_id != first.asset_id
    with read_session(engine) as session:
        # the old version's captions are kept as history, out of the queue; its job is gone
        assert {c.state for c in session.exec(select(Caption).where(Caption.asset_id == first.asset_id))} == {
            "superseded"}
        assert [j.asset_id for j in session.exec(select(Job)).all()] == [second.asset_id]
        assert queue.page(session, Filters(state=None)) == []
    status = store_status(engine)
    assert status["captions"]["pending"] == 0 and status["captions"]["superseded"] == 2
    assert status["orphaned"] == 0


def test_an_old_version_never_captioned_leaves_no_trace(engine, settings, tmp_path: Path) -> None:
    path = tmp_path / "half.png"
    path.write_bytes(_photo("PNG", 1))
    first = register_file(engine, path, settings)
    path.write_bytes(_photo("PNG", 2))
    second = register_file(engine, path, settings)
    with read_session(engine) as session:
        assert [a.id for a in session.exec(select(Asset)).all()] == [second.asset_id] != [first.asset_id]
        assert [j.asset_id for j in session.exec(select(Job)).all()] == [second.asset_id]


def test_a_reviewed_old_version_and_a_duplicate_elsewhere_are_kept(engine, settings, tmp_path: Path) -> None:
    reviewed, shared, copy = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "copy-of-b.png"
    reviewed.write_bytes(_photo("PNG", 3))
    shared.write_bytes(_photo("PNG", 4))
    copy.write_bytes(shared.read_bytes())
    old_a = register_file(engine, reviewed, settings).asset_id
    old_b = register_file(engine, shared, settings).asset_id
    assert register_file(engine, copy, settings).asset_id == old_b
    _two_captions(engine, old_a)
    with write_session(engine) as session:
        session.execute(sa.update(Caption).where(Caption.asset_id == old_a, Caption.kind == "alt_text")
                        .values(state="accepted"))
    reviewed.write_bytes(_photo("PNG", 5))
    shared.write_bytes(_photo("PNG", 6))
    register_file(engine, reviewed, settings)
    register_file(engine, shared, settings)
    with read_session(engine) as session:
        kept = session.get(Asset, old_a)
        assert kept is not None and kept.missing_since is not None
        assert len(session.exec(select(Caption).where(Caption.asset_id == old_a)).all()) == 2
        assert session.get(Asset, old_b) is not None and session.get(Asset, old_b).missing_since is None
        assert len(session.exec(select(Asset)).all()) == 4


def test_slow_jpeg_writer_with_gaps_longer_than_quiet_is_captioned_once(home: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _fast(monkeypatch)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    data = _photo("JPEG", 7, (640, 480))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "catalogcap", "watch", "--no-training", str(inbox)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    engine = create_store_engine(load_settings().db_url)
    log = home / "logs" / "watch.log"
    try:
        def ready() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            return log.exists() and "watching" in log.read_text()

        poll(ready, 90, "the daemon to start")
        quarter = len(data) // 4
        with (inbox / "slow.jpg").open("wb") as handle:
            for n in range(4):
                handle.write(data[n * quarter: len(data) if n == 3 else (n + 1) * quarter])
                handle.flush()
                if n < 3:
                    time.sleep(3.0)  # the slow writer: each pause is six quiet periods long

        def captioned() -> bool:
            with read_session(engine) as session:
                return session.exec(select(Job).where(Job.state == "done")).first() is not None

        poll(captioned, 90, "the finished file to be captioned")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        with read_session(engine) as session:
            assets = session.exec(select(Asset)).all()
            jobs = session.exec(select(Job)).all()
            paths = session.exec(select(AssetPath)).all()
            captions = session.exec(select(Caption)).all()
        import hashlib

        assert [a.fingerprint for a in assets] == [hashlib.sha256(data).hexdigest()]
        assert assets[0].state == "captioned" and assets[0].error is None
        assert [(j.state, j.attempts, j.last_error) for j in jobs] == [("done", 1, None)]
        assert [(Path(p.path).name, p.asset_id) for p in paths] == [("slow.jpg", assets[0].id)]
        assert sorted(c.kind for c in captions) == ["alt_text", "description"]
        text = log.read_text()
        assert "not ready (JPEG without its end marker)" in text and "rejected" not in text
        registered = [line for line in text.splitlines() if "slow.jpg: " in line and "not ready" not in line]
        assert len(registered) == 1 and registered[0].endswith('slow.jpg: new"}'), registered
        assert text.count("captioned 1,") == 1 and "truncated" not in text
    finally:
        engine.dispose()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_file_that_stays_cut_off_is_rejected_after_the_bounded_wait(home: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _fast(monkeypatch, CATALOGCAP_WATCH__INCOMPLETE_SECONDS="2")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    settings = load_settings()
    engine = create_store_engine(settings.db_url)
    daemon = Daemon(engine, settings, [inbox], stop_timeout=20, schedule_training=False)
    ready = threading.Event()
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False, "ready": ready}, daemon=True)
    thread.start()
    try:
        assert ready.wait(60)
        data = _photo("JPEG", 8)
        (inbox / "cut.jpg").write_bytes(data[: len(data) // 2])
        make_image(inbox / "fine.png", "blue")
        started = time.monotonic()

        def settled() -> bool:
            with read_session(engine) as session:
                states = {Path(p.path).name: session.get(Asset, p.asset_id).state
                          for p in session.exec(select(AssetPath)).all()}
            return states == {"cut.jpg": "rejected", "fine.png": "captioned"}

        poll(settled, 60, "the cut file rejected and the good one captioned")
        assert time.monotonic() - started >= 2.0, "the cut file waited for incomplete_seconds first"
        with read_session(engine) as session:
            assert len(session.exec(select(Asset)).all()) == 2
    finally:
        daemon.stop()
        thread.join(30)
        engine.dispose()
