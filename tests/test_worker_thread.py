"""The long-running worker thread (`watch` and `serve`): a stop that outlasts its timeout gives
the batch in hand back to the queue, with its attempt not counted."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlmodel import select

from catalogcap.intake import scan
from catalogcap.store.database import read_session
from catalogcap.store.models import Job
from catalogcap.watch.daemon import Daemon
from catalogcap.worker import Worker, WorkerThread
from tests.conftest import make_image


class Stuck:
    """A captioner that holds its batch until told to give up."""

    image_size = 32
    model_id, adapter_id = "stuck", None

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def caption_images(self, pictures):
        self.entered.set()
        self.release.wait(60)
        raise RuntimeError("released by the test")

    def generation_record(self, kind: str) -> dict:
        return {}


def jobs(engine) -> list[tuple[str, int, str | None]]:
    with read_session(engine) as session:
        return [(j.state, j.attempts, j.lease_owner) for j in session.exec(select(Job).order_by(Job.id)).all()]


def test_a_stop_past_its_timeout_releases_the_batch_in_hand(settings, engine, tmp_path: Path) -> None:
    make_image(tmp_path / "in" / "a.jpg")
    make_image(tmp_path / "in" / "b.png", "blue")
    scan(engine, [tmp_path / "in"], settings)
    stuck = Stuck()
    worker = Worker(engine, settings, captioner_factory=lambda *_: stuck)
    thread = WorkerThread(worker, stop_timeout=0.2)
    thread.start()
    try:
        assert stuck.entered.wait(60)
        assert [state for state, _, _ in jobs(engine)] == ["running", "running"]
        assert thread.stop() == 2
        assert jobs(engine) == [("pending", 0, None), ("pending", 0, None)]
    finally:
        stuck.release.set()


def test_a_stop_within_its_timeout_finishes_the_batch_and_releases_nothing(settings, engine,
                                                                           tmp_path: Path) -> None:
    make_image(tmp_path / "in" / "a.jpg")
    scan(engine, [tmp_path / "in"], settings)
    stuck = Stuck()
    worker = Worker(engine, settings, captioner_factory=lambda *_: stuck)
    thread = WorkerThread(worker, stop_timeout=30)
    thread.start()
    assert stuck.entered.wait(60)
    stuck.release.set()  # the batch ends (in a retry) while stop waits
    assert thread.stop() == 0 and not thread.running
    [(state, attempts, owner)] = jobs(engine)
    assert state in ("pending", "failed") and attempts == 1 and owner is None


def test_the_daemon_releases_its_batch_when_stopping_takes_too_long(settings, engine, tmp_path: Path) -> None:
    folder = tmp_path / "watched"
    make_image(folder / "a.jpg")
    stuck = Stuck()
    worker = Worker(engine, settings, captioner_factory=lambda *_: stuck)
    daemon = Daemon(engine, settings, [folder], stop_timeout=0.3, worker=worker, schedule_training=False)
    ready = threading.Event()
    runner = threading.Thread(target=daemon.run, kwargs={"install_signals": False, "ready": ready})
    runner.start()
    try:
        assert ready.wait(60) and stuck.entered.wait(60)
        started = time.monotonic()
        daemon.stop()
        runner.join(30)
        assert not runner.is_alive() and time.monotonic() - started < 10
        assert jobs(engine) == [("pending", 0, None)]
    finally:
        stuck.release.set()
