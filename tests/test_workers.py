"""`catalogcap worker` processes, `scan --queue-only` and `watch --queue-only`: real
subprocesses against one store (PostgreSQL where the test says so), real SIGTERM and SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlmodel import select

from catalogcap.cli import cli
from catalogcap.settings import load_settings
from catalogcap.store.database import create_store_engine, read_session
from catalogcap.store.models import Caption, Job, WorkerRow
from tests.conftest import make_image
from tests.factories import poll

COLOURS = ("red", "blue", "green", "yellow", "purple", "orange", "black", "cyan", "magenta", "brown")


def _images(folder: Path, count: int, first: int = 0) -> Path:
    """`count` pictures with distinct bytes (so none is a duplicate of another, nor of those
    made with another `first`)."""
    for n in range(first, first + count):
        make_image(folder / f"p{n:03d}.png", COLOURS[n % len(COLOURS)], size=(40 + n, 30 + n % 7))
    return folder


def _cli(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def _worker(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "catalogcap", "worker", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _jobs(engine) -> list[Job]:
    with read_session(engine) as session:
        return list(session.exec(select(Job)).all())


def _captioned_once(engine, count: int) -> None:
    """Every asset has one done job and one caption of each kind, saved once (version 1)."""
    with read_session(engine) as session:
        jobs = session.exec(select(Job)).all()
        captions = session.exec(select(Caption)).all()
    assert len(jobs) == count and {j.state for j in jobs} == {"done"}
    assert len({j.asset_id for j in jobs}) == count
    assert len(captions) == 2 * count
    assert {c.version for c in captions} == {1}, "an image was captioned (and committed) twice"


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_scan_queue_only_then_worker_until_empty(home: Path, tmp_path: Path) -> None:
    folder = _images(tmp_path / "photos", 6)
    summary = json.loads(_cli("scan", str(folder), "--queue-only", "--json"))
    assert (summary["found"], summary["new"], summary["captioned"]) == (6, 6, 0)
    engine = create_store_engine(load_settings().db_url)
    assert {j.state for j in _jobs(engine)} == {"pending"}
    proc = _worker("--until-empty", "--batch-size", "4", "--json")
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    assert json.loads(out)["captioned"] == 6
    _captioned_once(engine, 6)
    with read_session(engine) as session:
        [row] = session.exec(select(WorkerRow)).all()
    assert (row.pid, row.jobs_done) == (proc.pid, 6) and row.stopped_at is not None
    assert json.loads(_cli("status", "--json"))["workers"] == []  # it stopped, so it is not live


@pytest.mark.postgresql
@pytest.mark.slow
def test_three_workers_on_postgresql_caption_each_image_once(home: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Three idle workers are woken by NOTIFY when a scan queues jobs, and share the queue."""
    monkeypatch.setenv("CATALOGCAP_QUEUE__MAX_WAIT_SECONDS", "0")
    engine = create_store_engine(load_settings().db_url)
    procs = [_worker("--batch-size", "2") for _ in range(3)]
    try:
        def registered() -> bool:
            for proc in procs:
                assert proc.poll() is None, proc.communicate()[1]
            return len(json.loads(_cli("status", "--json"))["workers"]) == 3
        poll(registered, 180, "three live workers in status")
        live = json.loads(_cli("status", "--json"))["workers"]
        assert sorted(w["pid"] for w in live) == sorted(p.pid for p in procs)
        assert all(w["host"] and w["heartbeat_at"] for w in live)
        count = 24
        _cli("scan", str(_images(tmp_path / "photos", count)), "--queue-only")
        poll(lambda: {j.state for j in _jobs(engine)} == {"done"}, 240, "every job done")
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            _out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
        _captioned_once(engine, count)
        with read_session(engine) as session:
            done = {row.pid: row.jobs_done for row in session.exec(select(WorkerRow)).all()}
        assert sum(done.values()) == count
        assert sum(1 for n in done.values() if n) >= 2, f"the queue was not shared: {done}"
    finally:
        _stop(procs)


@pytest.mark.postgresql
@pytest.mark.slow
def test_worker_killed_mid_batch_its_jobs_return_after_the_lease(home: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The victim is frozen (SIGSTOP) holding its batch, so the survivors start beside a live
    process and cannot requeue its jobs early; then it is SIGKILLed: only the lease brings them back."""
    monkeypatch.setenv("CATALOGCAP_QUEUE__LEASE_SECONDS", "5")
    monkeypatch.setenv("CATALOGCAP_QUEUE__MAX_WAIT_SECONDS", "0")
    count = 16
    _cli("scan", str(_images(tmp_path / "photos", count)), "--queue-only")
    engine = create_store_engine(load_settings().db_url)
    victim = _worker("--batch-size", "8")
    procs = [victim]
    try:
        def held() -> list[Job]:
            return [j for j in _jobs(engine) if j.state == "running" and f":{victim.pid}:" in (j.lease_owner or "")]

        def holds() -> bool:
            assert victim.poll() is None, victim.communicate()[1]
            return bool(held())
        poll(holds, 180, "the first worker to claim a batch")
        victim.send_signal(signal.SIGSTOP)
        orphans = {j.id: j.lease_expires for j in held()}  # a commit racing the stop has already left
        assert orphans, "the stop must land while the batch is held"
        procs += [_worker("--batch-size", "4") for _ in range(2)]
        # both survivors listed (the frozen victim is listed too): each has run its start-up
        # recovery while the victim was alive, so only the lease can bring its jobs back
        survivors = {proc.pid for proc in procs[1:]}
        poll(lambda: survivors <= {w["pid"] for w in json.loads(_cli("status", "--json"))["workers"]}, 180,
              "both survivors to start")
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        try:
            poll(lambda: {j.state for j in _jobs(engine)} == {"done"}, 240, "every job done after the lease")
        except AssertionError as exc:
            states = sorted((j.id, j.state, j.lease_owner, str(j.lease_expires)) for j in _jobs(engine))
            _stop(procs)
            said = [proc.communicate()[1][-2000:] for proc in procs[1:]]
            raise AssertionError(f"{exc}\njobs: {states}\nsurvivors said: {said}") from None
        for proc in procs[1:]:
            proc.send_signal(signal.SIGTERM)
        for proc in procs[1:]:
            _out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
        _captioned_once(engine, count)
        finished = {j.id: j for j in _jobs(engine) if j.id in orphans}
        for job_id, expires in orphans.items():
            assert finished[job_id].attempts == 2  # the killed attempt counted, then one more
            assert finished[job_id].finished_at > expires, "taken over before the victim's lease ended"
            assert f":{victim.pid}:" not in (finished[job_id].lease_owner or "")
    finally:
        _stop(procs)


def test_watch_queue_only_queues_without_captioning(home: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from catalogcap.watch.daemon import Daemon

    monkeypatch.setenv("CATALOGCAP_WATCH__QUIET_SECONDS", "0.2")
    settings = load_settings()
    engine = create_store_engine(settings.db_url)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    daemon = Daemon(engine, settings, [inbox], schedule_training=False, caption=False)
    ready = threading.Event()
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False, "ready": ready})
    thread.start()
    try:
        assert ready.wait(60)
        _images(inbox, 3)
        poll(lambda: len(_jobs(engine)) == 3, 60, "three queued jobs")
        with read_session(engine) as session:
            assert session.exec(select(Caption)).all() == []
        assert {j.state for j in _jobs(engine)} == {"pending"}
        assert not any(t.name == "worker" and t.is_alive() for t in threading.enumerate())
    finally:
        daemon.stop()
        thread.join(30)
    assert not thread.is_alive()


@pytest.mark.postgresql
def test_listen_wakes_on_queued_jobs(store_url: str) -> None:
    """On PostgreSQL a job queued (and committed) by any process wakes idle workers at once."""
    from catalogcap.store.database import write_session
    from catalogcap.store.models import Asset
    from catalogcap.store.queue import enqueue
    from catalogcap.workers import listen

    engine = create_store_engine(store_url)
    wake, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=listen, args=(engine, wake, stop), daemon=True)
    thread.start()
    try:
        assert wake.wait(30), "listening never started"  # set once on (re)connecting
        wake.clear()
        with write_session(engine) as session:
            asset = Asset(fingerprint="f" * 64, size=1)
            session.add(asset)
            session.flush()
            enqueue(session, asset.id)
        assert wake.wait(30), "no NOTIFY arrived for the queued job"
    finally:
        stop.set()
        thread.join(10)
    engine.dispose()
    assert not thread.is_alive()


def _recipe() -> list[str]:
    """The catalogcap lines of README's "Many machines" block, comments dropped."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text.split("test_readme_many_machines_recipe", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.startswith("catalogcap ")]


@pytest.mark.postgresql
@pytest.mark.slow
def test_readme_many_machines_recipe(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each catalogcap line of the recipe, in order, on PostgreSQL; the long-running ones in the
    background until the end, where SIGTERM stops them with exit 0."""
    monkeypatch.setenv("CATALOGCAP_WATCH__QUIET_SECONDS", "0.3")
    monkeypatch.setenv("CATALOGCAP_QUEUE__MAX_WAIT_SECONDS", "0")
    folder = _images(tmp_path / "images", 6)
    lines = _recipe()
    assert [line.split()[1] for line in lines] == ["scan", "watch", "worker", "worker", "status"]
    engine = create_store_engine(load_settings().db_url)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    background: list[subprocess.Popen] = []
    outputs: dict[str, str] = {}
    try:
        for line in lines:
            args = [arg.replace("/srv/catalog/images", str(folder)) for arg in line.split()[1:]]
            command = [sys.executable, "-m", "catalogcap", *args]
            if args[0] in ("watch", "worker") and "--until-empty" not in args:
                background.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                                   stderr=subprocess.PIPE, text=True))
                continue
            if args[0] == "status":  # the background worker is up and the queue is worked off
                def settled() -> bool:
                    for proc in background:
                        assert proc.poll() is None, proc.communicate()[1]
                    with read_session(engine) as session:
                        workers = session.exec(select(WorkerRow)).all()
                    return (any(w.stopped_at is None for w in workers)
                            and {j.state for j in _jobs(engine)} == {"done"})
                poll(settled, 240, "the background worker and an empty queue")
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
            assert done.returncode == 0, (line, done.stderr)
            outputs[args[0]] = done.stdout
        assert json.loads(outputs["scan"])["new"] == 6 and json.loads(outputs["scan"])["captioned"] == 0
        [live] = json.loads(outputs["status"])["workers"]
        assert live["pid"] == background[1].pid and live["host"]
        make_image(folder / "late-arrival.png", "teal", size=(99, 77))  # the queue-only watcher queues it
        poll(lambda: len(_jobs(engine)) == 7 and {j.state for j in _jobs(engine)} == {"done"}, 120,
              "the late arrival queued by watch and captioned by the worker")
        for proc in background:
            proc.send_signal(signal.SIGTERM)
        for proc in background:
            _out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
        _captioned_once(engine, 7)
    finally:
        _stop(background)


@pytest.mark.postgresql
@pytest.mark.slow
def test_workers_carry_on_after_the_database_restarts(home: Path, tmp_path: Path, pg_server,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALOGCAP_QUEUE__MAX_WAIT_SECONDS", "0")
    engine = create_store_engine(load_settings().db_url)
    proc = _worker("--batch-size", "4")
    try:
        _cli("scan", str(_images(tmp_path / "before", 4)), "--queue-only")

        def all_done(count: int) -> Callable[[], bool]:
            def check() -> bool:
                assert proc.poll() is None, proc.communicate()[1]
                jobs = _jobs(engine)
                return len(jobs) == count and {j.state for j in jobs} == {"done"}
            return check
        poll(all_done(4), 180, "the first images captioned")
        pg_server.restart()  # every connection of the worker is cut
        _cli("scan", str(_images(tmp_path / "after", 4, first=4)), "--queue-only")
        poll(all_done(8), 120, "the images queued after the restart captioned")
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        _captioned_once(engine, 8)
    finally:
        _stop([proc])
