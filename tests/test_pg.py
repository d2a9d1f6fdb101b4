"""PostgreSQL specifics: an unreachable server is one line in seconds; UTC on a server in
another time zone; JSON and boolean columns round-trip."""

from __future__ import annotations

import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlmodel import select

from catalogcap.cli import cli
from catalogcap.store.database import create_store_engine, read_session, write_session
from catalogcap.store.models import Adapter, AssetPath, Job
from catalogcap.store.queue import claim, enqueue

pytest.importorskip("psycopg", reason="the PostgreSQL driver is not installed (pip install 'catalogcap[postgres]')")


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections and never answers: a server that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in accepted:
        conn.close()
    listener.close()


@pytest.mark.parametrize("where", ["hangs", "refuses"])
def test_unreachable_database_is_one_line_naming_the_host_within_10s(tmp_path: Path, silent_server: int,
                                                                     where: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALOGCAP_HOME", str(tmp_path))
    if where == "refuses":
        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    else:
        port = silent_server
    url = f"postgresql+psycopg://catalog:hunter2@127.0.0.1:{port}/catalog"
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["--database-url", url, "status"])
    took = time.monotonic() - started
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "hunter2" not in lines[0] and lines[0].startswith("error: ")
    assert took < 10, f"took {took:.1f}s"


@pytest.mark.postgresql
def test_times_are_utc_on_a_server_in_another_time_zone(store_url: str) -> None:
    engine = create_store_engine(store_url)
    with engine.begin() as conn:  # sessions default to the database's zone: make it not UTC
        conn.exec_driver_sql(f'ALTER DATABASE "{engine.url.database}" SET timezone TO \'Pacific/Auckland\'')
    engine.dispose()
    engine = create_store_engine(store_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW timezone").scalar() == "Pacific/Auckland"
    when = datetime(2026, 3, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    with write_session(engine) as session:
        session.add(Adapter(id="a1", base_model="m", path="/p", metrics={"cider": 1.5, "nested": [1, "x"]},
                            created_at=when))
        from catalogcap.store.models import Asset

        asset = Asset(fingerprint="e" * 64, size=3)
        session.add(asset)
        session.flush()
        session.add(AssetPath(asset_id=asset.id, path="/x.png", size=3, mtime_ns=2**40, missing=True))
        enqueue(session, asset.id, now=when)
    with read_session(engine) as session:
        adapter = session.get(Adapter, "a1")
        path = session.exec(select(AssetPath).where(AssetPath.missing)).one()
    assert adapter.created_at == when and adapter.created_at.utcoffset() == timedelta(0)
    assert adapter.metrics == {"cider": 1.5, "nested": [1, "x"]}
    assert path.missing is True and path.mtime_ns == 2**40
    # a job queued at `when` is runnable one second later, and not one second earlier, whatever the zone
    assert claim(engine, "w", 5, lease_seconds=60, now=when - timedelta(seconds=1)) == []
    [claimed] = claim(engine, "w", 5, lease_seconds=60, now=when + timedelta(seconds=1))
    with read_session(engine) as session:
        job = session.get(Job, claimed.job_id)
    assert job.lease_expires == when + timedelta(seconds=61)
    engine.dispose()


@pytest.mark.postgresql
def test_processes_starting_together_on_a_new_database_migrate_it_once(store_url: str) -> None:
    import os
    import subprocess
    import sys

    from catalogcap.store.database import current_revision, head_revision
    from tests.conftest import ROOT

    code = "import sys; from catalogcap.store.database import create_store_engine; create_store_engine(sys.argv[1])"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, store_url], env=env, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    errors = [proc.communicate(timeout=120)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4, errors
    engine = create_store_engine(store_url, migrate=False)
    assert current_revision(engine) == head_revision()
    engine.dispose()
