"""`catalogcap backfill`: the local engine and a real local Ray cluster (Ray Data actor pool),
beside a real `catalogcap worker` process, and with an actor that dies mid-batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlmodel import col, select

from catalogcap.cli import cli
from catalogcap.settings import load_settings
from catalogcap.store.database import create_store_engine, read_session
from catalogcap.store.models import Caption, Job
from catalogcap.worker.adapters import default_factory
from tests.conftest import make_image
from tests.factories import poll

ROOT = Path(__file__).resolve().parents[1]
COLOURS = ("red", "blue", "green", "yellow", "purple", "orange", "black", "cyan", "magenta", "brown")


def _images(folder: Path, count: int, first: int = 0) -> Path:
    for n in range(first, first + count):
        make_image(folder / f"p{n:03d}.png", COLOURS[n % len(COLOURS)], size=(40 + n, 30 + n % 7))
    return folder


def _cli(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.stdout


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _captioned_once(engine, count: int) -> list[Job]:
    with read_session(engine) as session:
        jobs = list(session.exec(select(Job)).all())
        captions = session.exec(select(Caption)).all()
    assert len(jobs) == count and {j.state for j in jobs} == {"done"}, sorted((j.id, j.state) for j in jobs)
    assert len(captions) == 2 * count
    assert {c.version for c in captions} == {1}, "an image was captioned (and committed) twice"
    return jobs


@pytest.fixture
def ray_env(monkeypatch: pytest.MonkeyPatch):
    """A local Ray cluster started by the test (it inherits PYTHONPATH); shut down after."""
    ray = pytest.importorskip("ray", reason="the Ray tests need catalogcap[ray]")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # actors get this module's code by value
    yield ray
    ray.shutdown()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_local_backfill_captions_the_queue_once_and_resumes(home: Path, tmp_path: Path) -> None:
    _cli("scan", str(_images(tmp_path / "photos", 5)), "--queue-only")
    first = json.loads(_cli("backfill", "--pending", "--engine", "local", "--batch-size", "2", "--json"))
    assert set(first) == {"images", "captioned", "failed", "seconds", "img_s"}
    assert (first["images"], first["captioned"], first["failed"]) == (5, 5, 0)
    assert first["img_s"] > 0
    again = json.loads(_cli("backfill", "--pending", "--json"))
    assert (again["images"], again["captioned"]) == (0, 0)  # rerun: nothing left, nothing redone
    _captioned_once(create_store_engine(load_settings().db_url), 5)


def test_backfill_of_a_folder_registers_it_and_captions_only_its_images(home: Path, tmp_path: Path) -> None:
    _cli("scan", str(_images(tmp_path / "elsewhere", 3)), "--queue-only")
    out = json.loads(_cli("backfill", str(_images(tmp_path / "new", 4, first=10)), "--json"))
    assert (out["images"], out["captioned"]) == (4, 4)
    engine = create_store_engine(load_settings().db_url)
    with read_session(engine) as session:
        states = sorted(j.state for j in session.exec(select(Job)).all())
    assert states == ["done"] * 4 + ["pending"] * 3
    assert "give FOLDERS to register and caption, or --pending" in CliRunner().invoke(
        cli, ["backfill"]).output


def test_a_bad_image_fails_alone_and_the_exit_code_says_so(home: Path, tmp_path: Path) -> None:
    folder = _images(tmp_path / "photos", 3)
    _cli("scan", str(folder), "--queue-only")
    (folder / "p001.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)  # broken after it was queued
    os.utime(folder / "p001.png", (1, 1))
    out = json.loads(_cli("backfill", "--pending", "--json", code=1))
    assert (out["images"], out["captioned"], out["failed"]) == (3, 2, 1)


@pytest.mark.postgresql
@pytest.mark.slow
def test_ray_backfill_beside_a_worker_captions_each_image_once(home: Path, tmp_path: Path, ray_env) -> None:
    """The worker starts once the Ray actors hold a batch, so both take jobs from one queue."""
    count = 60
    _cli("scan", str(_images(tmp_path / "photos", count)), "--queue-only")
    engine = create_store_engine(load_settings().db_url)
    backfill = subprocess.Popen([sys.executable, "-m", "catalogcap", "backfill", "--pending", "--engine", "ray",
                                 "--workers", "2", "--batch-size", "2", "--json"], env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker = None
    try:
        def actors_at_work() -> bool:
            assert backfill.poll() is None, backfill.communicate()[1][-3000:]
            with read_session(engine) as session:
                return session.exec(select(Job).where(Job.state == "running",
                                                      col(Job.lease_owner).contains(":backfill-"))).first() is not None
        poll(actors_at_work, 300, "a Ray actor to claim a batch")
        worker = subprocess.Popen([sys.executable, "-m", "catalogcap", "worker", "--until-empty", "--batch-size",
                                   "2", "--json"], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        out, err = backfill.communicate(timeout=600)
        assert backfill.returncode == 0, err[-3000:]
        worker_out, worker_err = worker.communicate(timeout=300)
        assert worker.returncode == 0, worker_err[-3000:]
    finally:
        for proc in (worker, backfill):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    summary = json.loads(out)
    by_worker = json.loads(worker_out)["captioned"]
    print(f"backfill captioned {summary['captioned']}, the worker {by_worker}")
    assert summary["captioned"] + by_worker == count, (summary, by_worker)
    assert summary["captioned"] > 0 and summary["failed"] == 0
    _captioned_once(engine, count)


class DiesOnce:
    """A real captioner whose first call in any process of the test kills that process, after
    its batch was claimed and before anything is committed (an actor lost mid-batch)."""

    def __init__(self, real, marker: str) -> None:
        self._real, self._marker = real, marker

    def __getattr__(self, name: str):
        return getattr(self._real, name)

    def caption_images(self, pictures):
        try:
            os.close(os.open(self._marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return self._real.caption_images(pictures)
        os._exit(1)


def dying_factory(marker: str):
    def factory(settings, adapter):
        return DiesOnce(default_factory(settings, adapter), marker)
    return factory


@pytest.mark.slow
def test_an_actor_that_dies_mid_batch_loses_and_doubles_nothing(home: Path, tmp_path: Path, ray_env) -> None:
    from catalogcap.backfill import backfill

    count = 9
    _cli("scan", str(_images(tmp_path / "photos", count)), "--queue-only")
    settings = load_settings()
    engine = create_store_engine(settings.db_url)
    marker = tmp_path / "died"
    summary = backfill(engine, settings, engine_name="ray", workers=2, batch_size=3,
                       captioner_factory=dying_factory(str(marker)))
    assert marker.exists(), "no actor died: the test proved nothing"
    assert (summary.images, summary.captioned, summary.failed) == (count, count, 0)
    assert summary.passes >= 2
    jobs = _captioned_once(engine, count)
    assert sorted(j.attempts for j in jobs) == [1] * (count - 3) + [2] * 3  # the lost batch ran once more


def _recipe() -> list[str]:
    text = (ROOT / "README.md").read_text()
    marker = "tests/test_backfill.py::test_readme_backfill_recipe"
    block = text[text.index(marker):]
    block = block[block.index("```sh") + 5:]
    block = block[:block.index("```")]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip().startswith("catalogcap ")]


@pytest.mark.slow
def test_readme_backfill_recipe(home: Path, tmp_path: Path, ray_env) -> None:
    """The README's backfill lines, in order, against a Ray cluster started with `ray start`
    (as on a head node); GPUs become CPU actors here."""
    lines = _recipe()
    assert [line.split()[1] for line in lines] == ["scan", "backfill", "backfill"]
    folder = _images(tmp_path / "new-season", 6)
    env = _env()
    ray_bin = Path(sys.executable).with_name("ray")
    started = subprocess.run([str(ray_bin), "start", "--head", "--num-cpus", "3", "--include-dashboard", "false",
                              "--disable-usage-stats"], env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stderr[-3000:]
    outputs = []
    try:
        for n, line in enumerate(lines):
            args = [arg.replace("/srv/catalog/new-season", str(folder)) for arg in line.split()[1:]]
            args = ["0" if a == "1" and args[i - 1] == "--gpus-per-worker" else
                    "2" if args[i - 1] == "--workers" else a for i, a in enumerate(args)]
            if n == 2:
                _images(folder, 3, first=20)  # more photos arrive before the local backfill
            done = subprocess.run([sys.executable, "-m", "catalogcap", *args], env=env, capture_output=True,
                                  text=True, timeout=600)
            assert done.returncode == 0, (line, done.stderr[-3000:])
            outputs.append(done.stdout)
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], env=env, capture_output=True, timeout=120)
    on_ray, local = json.loads(outputs[1]), json.loads(outputs[2])
    assert (on_ray["images"], on_ray["captioned"]) == (6, 6)
    assert (local["images"], local["captioned"]) == (3, 3)
    _captioned_once(create_store_engine(load_settings().db_url), 9)
