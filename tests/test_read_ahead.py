"""The worker reads the next batch's images while the model captions the current one
(`queue.read_ahead`), keeps their leases, and gives them back when it stops."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlmodel import select

from catalogcap.intake import scan
from catalogcap.store.database import read_session
from catalogcap.store.models import Caption, Job
from catalogcap.worker import Worker
from catalogcap.worker.adapters import default_factory
from tests.conftest import make_image
from tests.factories import poll


class Gated:
    """The real captioner; its first batch waits at the model until the test lets it go, and
    every image it reads is recorded."""

    def __init__(self, real, entered: threading.Event, go: threading.Event, reads: list[str]) -> None:
        self._real, self.entered, self.go, self.reads = real, entered, go, reads
        self._first = True

    def __getattr__(self, name: str):
        return getattr(self._real, name)

    def load_pixels(self, path: Path):
        self.reads.append(Path(path).name)
        return self._real.load_pixels(path)

    def caption_images(self, pictures, *args):
        if self._first:
            self._first = False
            self.entered.set()
            assert self.go.wait(60)
        return self._real.caption_images(pictures, *args)


def _jobs(engine) -> list[Job]:
    with read_session(engine) as session:
        return list(session.exec(select(Job)).all())


def _setup(settings, engine, tmp_path: Path, read_ahead: bool, count: int = 6):
    for n in range(count):
        make_image(tmp_path / "photos" / f"p{n}.png", (n * 40, 90, 200), size=(40 + n, 30))
    settings = settings.model_copy(update={"batch_size": 2, "queue": settings.queue.model_copy(
        update={"read_ahead": read_ahead})})
    scan(engine, [tmp_path / "photos"], settings)
    entered, go, reads = threading.Event(), threading.Event(), []
    worker = Worker(engine, settings, captioner_factory=lambda s, a: Gated(default_factory(s, a), entered, go, reads))
    return worker, entered, go, reads


@pytest.mark.parametrize("read_ahead", [True, False])
def test_the_next_batch_is_read_while_the_model_captions(settings, engine, tmp_path: Path, read_ahead: bool) -> None:
    worker, entered, go, reads = _setup(settings, engine, tmp_path, read_ahead)
    done = {}
    runner = threading.Thread(target=lambda: done.setdefault("r", worker.drain()))
    runner.start()
    try:
        assert entered.wait(120), "the first batch never reached the model"
        if read_ahead:
            poll(lambda: len(reads) == 4, 60, "the next batch's images read while the model works")
        running = [j for j in _jobs(engine) if j.state == "running"]
        assert len(running) == (4 if read_ahead else 2)
        assert {j.lease_owner for j in running} == {worker.owner}
        assert len(reads) == (4 if read_ahead else 2)
    finally:
        go.set()
        runner.join(300)
        worker.close()
    assert done["r"].captioned == 6
    assert {j.state for j in _jobs(engine)} == {"done"} and {j.attempts for j in _jobs(engine)} == {1}
    with read_session(engine) as session:
        captions = session.exec(select(Caption)).all()
    assert len(captions) == 12 and {c.version for c in captions} == {1}
    assert sorted(reads) == sorted(f"p{n}.png" for n in range(6))  # each image read once


def test_closing_gives_the_batch_read_ahead_back(settings, engine, tmp_path: Path) -> None:
    worker, _entered, go, _reads = _setup(settings, engine, tmp_path, True, count=4)
    go.set()
    assert worker.run_batch().captioned == 2
    assert worker.holds_ahead
    held = [j for j in _jobs(engine) if j.state == "running"]
    assert len(held) == 2 and {j.attempts for j in held} == {1}
    worker.close()
    back = {j.id: j for j in _jobs(engine)}
    for job in held:
        assert back[job.id].state == "pending" and back[job.id].attempts == 0 and back[job.id].lease_owner is None
