"""A damaged database, a full disk, an emptied database file: one line and exit 1 from a real
process, never a traceback; a daemon logging a lasting condition says it once."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from catalogcap.errors import StoreError
from catalogcap.logs import OncePerCondition, StreamHandler
from catalogcap.store.captions import save_model_captions
from catalogcap.store.database import create_store_engine, write_session
from catalogcap.store.models import Asset
from tests.conftest import make_image

ROOT = Path(__file__).resolve().parents[1]
# Runs the real CLI with every SQLite connection capped at the size the database has now:
# the next page it needs fails with "database or disk is full", as on a full disk.
FULL_DISK = textwrap.dedent("""
    import sys
    import sqlalchemy as sa
    from sqlalchemy.engine import Engine

    @sa.event.listens_for(Engine, "connect")
    def _cap(dbapi_conn, _record):
        cursor = dbapi_conn.cursor()
        pages = cursor.execute("PRAGMA page_count").fetchone()[0]
        cursor.execute(f"PRAGMA max_page_count = {max(pages, 1)}")
        cursor.close()

    from catalogcap.cli import main
    main(sys.argv[1:])
""")


def catalogcap(*args: str, home: Path, prefix: tuple[str, ...] = ("-m", "catalogcap")
               ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CATALOGCAP_HOME": str(home),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *prefix, *args], env=env, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)


def assert_one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def fill(engine, n: int) -> None:
    with write_session(engine) as session:
        for i in range(n):
            asset = Asset(fingerprint=f"{i:064x}", size=10, state="captioned", format="JPEG")
            session.add(asset)
            session.flush()
            save_model_captions(session, asset.id, {"alt_text": f"red shirt {i} " * 5,
                                                    "description": f"a red shirt {i} " * 10},
                                model="tiny", adapter_id=None, generation={"alt_text": {}, "description": {}})
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def test_a_damaged_database_is_one_line_with_the_way_to_recover(home: Path, engine, photos: Path) -> None:
    fill(engine, 300)
    engine.dispose()
    db = home / "catalogcap.db"
    size = db.stat().st_size
    with open(db, "r+b") as handle:  # every page but the schema: each command meets the damage at once
        handle.seek(4096)
        handle.write(os.urandom(size - 4096))
    for args in (["captions", "list"], ["scan", str(photos)]):
        done = catalogcap(*args, home=home)
        assert_one_line_error(done, f"database {db} is damaged", f"sqlite3 {db} .recover", "Backups")


def test_a_full_disk_is_one_line_and_what_got_in_is_whole(home: Path, engine, tmp_path: Path) -> None:
    fill(engine, 1)
    engine.dispose()
    folder = tmp_path / "many"
    for i in range(40):
        make_image(folder / f"{'a-long-product-name-' * 4}{i}.png", size=(16, 16))
    done = catalogcap(FULL_DISK, "scan", str(folder), home=home, prefix=("-c",))
    assert_one_line_error(done, "the disk is full", "nothing was saved")
    status = catalogcap("status", "--json", home=home)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    queued = data["assets_by_state"].get("queued", 0)
    assert data["assets"] == 1 + queued < 41  # what got in before the disk filled is whole and queued
    assert data["jobs"].get("pending", 0) == queued


def test_an_empty_database_file_is_refused_not_recreated(home: Path) -> None:
    db = home / "catalogcap.db"
    db.write_bytes(b"")
    for args in (["captions", "list"], ["init"]):
        done = catalogcap(*args, home=home)
        assert_one_line_error(done, f"database {db} exists but is empty", "backup")
    assert db.stat().st_size == 0
    with pytest.raises(StoreError, match="is empty"):
        create_store_engine(f"sqlite:///{db}")


def test_a_lasting_condition_is_logged_once_with_a_count() -> None:
    now = [0.0]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(OncePerCondition(window=60.0, clock=lambda: now[0]))
    log = logging.getLogger("catalogcap.test.once")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(handler)
    try:
        for attempt in range(500):
            try:
                raise OSError(errno.ENOSPC, f"database or disk is full\n[SQL: INSERT {attempt}]")
            except OSError:
                log.exception("worker batch failed; continuing")
            log.info("tick %d", attempt)  # information is never held back
        assert stream.getvalue().count("worker batch failed") == 1
        assert stream.getvalue().count("tick") == 500
        now[0] = 61.0
        log.warning("disk still full")
        try:
            raise OSError(errno.ENOSPC, "database or disk is full")
        except OSError:
            log.exception("worker batch failed; continuing")
        assert "repeated 499 more time(s)" in stream.getvalue()
        assert stream.getvalue().count("disk still full") == 1
        for url in ("https://a.example/h", "https://b.example/h"):  # two conditions: both told, once each
            for attempt in range(3):
                log.warning("webhook %s: event %s attempt %d failed", url, f"{attempt:032x}", attempt)
        assert stream.getvalue().count("https://a.example/h") == stream.getvalue().count("https://b.example/h") == 1
    finally:
        log.removeHandler(handler)


def test_a_handler_that_cannot_write_says_so_once(capfd) -> None:
    class FullDisk(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    handler = StreamHandler(FullDisk())
    log = logging.getLogger("catalogcap.test.fulldisk")
    log.propagate = False
    log.addHandler(handler)
    try:
        for attempt in range(500):
            log.error("cannot save %d", attempt)
    finally:
        log.removeHandler(handler)
    err = capfd.readouterr().err
    assert "Logging error" not in err
    assert err.count("cannot write log records") == 1 and "No space left on device" in err
