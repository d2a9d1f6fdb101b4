from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel, select

from catalogcap.errors import StoreError
from catalogcap.store import models
from catalogcap.store.captions import Conflict, decide, save_model_captions
from catalogcap.store.database import (
    create_store_engine,
    current_revision,
    head_revision,
    read_session,
    upgrade,
    write_session,
)
from catalogcap.store.models import Asset, Caption, Job, utcnow
from catalogcap.store.queue import claim, complete, enqueue, fail, recover_stale, retry
from tests.factories import poll


def _asset(session, n: int) -> Asset:
    asset = Asset(fingerprint=f"{n:064x}", size=10)
    session.add(asset)
    session.flush()
    return asset


def test_models_match_migrations(store_url: str) -> None:
    """Migrations run from empty and build exactly the models' schema, on either backend."""
    engine = create_store_engine(store_url)
    assert current_revision(engine) == head_revision()

    def modelled(obj, name, kind, reflected, _compare_to) -> bool:  # one backend's own indexes are not on the models
        return not (kind == "index" and reflected and name in models.DIALECT_INDEXES)

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True,
                                                                       "include_object": modelled}), SQLModel.metadata)
        indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("asset_paths")}
    assert {name for name, dialect in models.DIALECT_INDEXES.items() if dialect == engine.dialect.name} <= indexes
    assert not {name for name, dialect in models.DIALECT_INDEXES.items() if dialect != engine.dialect.name} & indexes
    engine.dispose()
    assert diff == []


@pytest.mark.sqlite_only
def test_sqlite_is_wal_with_busy_timeout(engine) -> None:
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_upgrade_existing_database_in_place(store_url: str) -> None:
    """A database made by an older release (only the first migration) is upgraded and keeps its rows."""
    url = store_url
    engine = create_store_engine(url, migrate=False)
    upgrade(engine, "0001")
    with engine.begin() as conn:  # as that release wrote it: today's model has columns 0001 lacks
        conn.exec_driver_sql("INSERT INTO assets (fingerprint, size, state, created_at, updated_at)"
                             f" VALUES ('{1:064x}', 10, 'queued', '2026-01-01 00:00:00', '2026-01-01 00:00:00')")
    engine.dispose()
    engine = create_store_engine(url)
    assert current_revision(engine) == head_revision()
    with write_session(engine) as session:
        asset = session.exec(select(Asset)).one()
    engine.dispose()
    assert asset.fingerprint == f"{1:064x}"
    assert asset.created_at.isoformat() == "2026-01-01T00:00:00+00:00"  # read back in UTC on both backends


def test_unknown_newer_schema_is_refused(store_url: str) -> None:
    engine = create_store_engine(store_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_future'")
    engine.dispose()
    with pytest.raises(StoreError, match="newer release"):
        create_store_engine(store_url)


@pytest.mark.sqlite_only
def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        create_store_engine(f"sqlite:///{tmp_path / 'nope' / 'db.sqlite'}")


def test_enqueue_is_idempotent_while_active(engine) -> None:
    with write_session(engine) as session:
        asset = _asset(session, 1)
        first = enqueue(session, asset.id)
        second = enqueue(session, asset.id)
        assert first.id == second.id
    # a raw duplicate active job violates the partial unique index
    with write_session(engine) as session, pytest.raises(sa.exc.IntegrityError), session.begin_nested():
        session.add(Job(asset_id=asset.id, state="pending"))


def test_concurrent_claims_are_disjoint(engine) -> None:
    with write_session(engine) as session:
        for n in range(40):
            enqueue(session, _asset(session, n).id)
    got: list[list[int]] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while batch := claim(engine, name, 3, lease_seconds=60):
            with lock:
                got.append([c.job_id for c in batch])

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [job_id for batch in got for job_id in batch]
    assert len(ids) == 40 and len(set(ids)) == 40


def test_fail_backoff_then_quarantine_then_retry(engine) -> None:
    with write_session(engine) as session:
        job_id = enqueue(session, _asset(session, 1).id).id
    kwargs = {"permanent": False, "max_attempts": 2, "backoff_seconds": 10, "backoff_max_seconds": 100}
    [_claimed] = claim(engine, "w", 5, lease_seconds=60)
    with write_session(engine) as session:
        assert fail(session, job_id, "w", "boom", **kwargs) == "pending"
        job = session.get(Job, job_id)
        assert job.run_after > utcnow() + timedelta(seconds=5)
    assert claim(engine, "w", 5, lease_seconds=60) == []  # backing off
    later = utcnow() + timedelta(seconds=11)
    assert [c.job_id for c in claim(engine, "w", 5, lease_seconds=60, now=later)] == [job_id]
    with write_session(engine) as session:
        assert fail(session, job_id, "w", "boom again", **kwargs) == "failed"
        assert session.get(Job, job_id).last_error == "boom again"
    assert retry(engine, all_failed=True) == 1
    assert [c.attempts for c in claim(engine, "w", 5, lease_seconds=60)] == [1]


def test_expired_lease_is_reclaimed_and_old_owner_cannot_complete(engine) -> None:
    with write_session(engine) as session:
        job_id = enqueue(session, _asset(session, 1).id).id
    claim(engine, "dead-worker", 1, lease_seconds=5)
    later = utcnow() + timedelta(seconds=6)
    [again] = claim(engine, "new-worker", 1, lease_seconds=60, now=later)
    assert again.job_id == job_id and again.attempts == 2
    with write_session(engine) as session:
        assert not complete(session, job_id, "dead-worker")
        assert complete(session, job_id, "new-worker")


def test_an_idle_worker_counts_expired_leases_as_work(engine) -> None:
    """A running worker decides to claim by counting runnable jobs: a job whose worker froze
    or died mid-batch must count once its lease ends, or only a restart would bring it back."""
    from catalogcap.store.queue import runnable_count

    with write_session(engine) as session:
        job_id = enqueue(session, _asset(session, 1).id).id
    claim(engine, "frozen-worker", 1, lease_seconds=5)
    with read_session(engine) as session:
        assert runnable_count(session) == 0  # held under a live lease
        assert runnable_count(session, now=utcnow() + timedelta(seconds=6)) == 1
    [again] = claim(engine, "survivor", 1, lease_seconds=60, now=utcnow() + timedelta(seconds=6))
    assert again.job_id == job_id


def test_recover_stale_requeues_jobs_of_dead_processes(engine) -> None:
    import socket

    with write_session(engine) as session:
        job_id = enqueue(session, _asset(session, 1).id).id
    claim(engine, f"{socket.gethostname()}:999999999:worker:x", 1, lease_seconds=3600)
    assert recover_stale(engine) == 1
    with write_session(engine) as session:
        assert session.get(Job, job_id).state == "pending"

    # a restarted container reuses the pid (often 1): our pid, but an owner id we did not make
    import os

    from catalogcap.store.queue import new_owner

    ours = new_owner()
    assert claim(engine, ours, 1, lease_seconds=3600)
    assert recover_stale(engine) == 0  # our own live lease is left alone
    with write_session(engine) as session:
        session.get(Job, job_id).state = "pending"
        session.get(Job, job_id).lease_owner = None
    claim(engine, f"{socket.gethostname()}:{os.getpid()}:watch:previous", 1, lease_seconds=3600)
    assert recover_stale(engine) == 1


def test_review_decisions_keep_model_text_and_detect_conflicts(engine) -> None:
    generation = {kind: {"num_beams": 1} for kind in models.KINDS}
    with write_session(engine) as session:
        asset = _asset(session, 1)
        saved = save_model_captions(session, asset.id, {"alt_text": "A red shirt", "description": "A shirt."},
                                    model="m", adapter_id=None, generation=generation)
    alt = next(c for c in saved if c.kind == "alt_text")
    with write_session(engine) as session:
        edited = decide(session, alt.id, "edit", reviewer="ann", text="Red cotton T-shirt",
                        expected_version=alt.version)
        assert (edited.state, edited.text, edited.model_text) == ("edited", "Red cotton T-shirt", "A red shirt")
    with write_session(engine) as session, pytest.raises(Conflict, match="ann"):
        decide(session, alt.id, "accept", reviewer="bob", expected_version=alt.version)
    # the model recaptioning later does not overwrite a reviewed caption
    with write_session(engine) as session:
        save_model_captions(session, asset.id, {"alt_text": "Other", "description": "Other."}, model="m",
                            adapter_id="a1", generation=generation)
        assert session.get(Caption, alt.id).text == "Red cotton T-shirt"
        desc = session.exec(select(Caption).where(Caption.kind == "description")).one()
        assert (desc.text, desc.adapter_id, desc.version) == ("Other.", "a1", 2)


def test_json_columns_store_a_non_finite_float_as_null(engine) -> None:
    """A diverged loss (NaN) or an unbounded value in a round's metrics is stored as null on every
    backend; PostgreSQL's json type refused the whole row (and so the round's end)."""
    metrics = {"train": {"final_loss": float("nan")}, "gate_interval": [float("-inf"), 1.5], "steps": 3}
    with write_session(engine) as session:
        session.add(models.TrainingRun(id="run-nan", metrics=metrics))
    with read_session(engine) as session:
        stored = session.get(models.TrainingRun, "run-nan").metrics
    assert stored == {"train": {"final_loss": None}, "gate_interval": [None, 1.5], "steps": 3}


def test_a_file_renamed_before_its_turn_is_captioned_under_its_new_name(settings, engine, photos: Path) -> None:
    """The daemon marks the old name missing at once; if the worker reaches the job before the
    new name is stable, the job has no file. That must not reject the image for good."""
    from catalogcap.intake import mark_path_missing, register_file
    from catalogcap.worker import Worker

    old = photos / "IMG_0001.jpg"
    (photos / "red-shirt.jpg").rename(old)
    first = register_file(engine, old, settings)
    assert first.outcome == "new"
    new = old.rename(photos / "red-linen-shirt.jpg")
    assert mark_path_missing(engine, old) == 1
    worker = Worker(engine, settings)
    try:
        gone = worker.run_batch()
        assert gone.failed == 1 and str(old) in gone.rejections[0]["path"]  # named by its file, not "asset 1"
        with read_session(engine) as session:
            assert session.get(Asset, first.asset_id).state == "queued"  # not rejected: not the image's fault
        again = register_file(engine, new, settings)
        assert again.outcome == "moved" and again.asset_id == first.asset_id
        assert worker.run_batch().captioned == 1
    finally:
        worker.close()
    with read_session(engine) as session:
        assert session.get(Asset, first.asset_id).state == "captioned"
        assert len(session.exec(select(Caption).where(Caption.asset_id == first.asset_id)).all()) == 2


def test_a_slow_batch_keeps_its_leases(settings, engine, photos: Path) -> None:
    """Another worker must not take over jobs whose worker is alive but slow.

    The captioner stays inside `caption_images` until the other worker has tried to claim,
    and that claim happens only after the first lease has run out: without renewal the jobs
    would be free to take, whatever the timing."""

    from catalogcap.intake import scan
    from catalogcap.store.queue import new_owner
    from catalogcap.worker import Worker

    entered, release = threading.Event(), threading.Event()

    class Slow:
        image_size = 32
        model_id, adapter_id = "slow", None

        def caption_images(self, pictures):
            entered.set()
            release.wait(30)
            raise RuntimeError("gave up")  # then fail: the jobs retry later

    def leases() -> list[datetime]:
        with read_session(engine) as session:
            return [job.lease_expires for job in session.exec(select(Job)).all()]

    short = settings.model_copy(update={"queue": settings.queue.model_copy(update={"lease_seconds": 2.0})})
    scan(engine, [photos], short)
    slow = Worker(engine, short, captioner_factory=lambda *_: Slow())
    runner = threading.Thread(target=slow.run_batch)
    runner.start()
    try:
        assert entered.wait(30), "the batch never reached the captioner"
        first = max(leases())
        poll(lambda: utcnow() > first + timedelta(seconds=0.5), 30, "the first lease to be over")
        assert not release.is_set() and runner.is_alive()  # still captioning
        taken = claim(engine, new_owner("other"), 10, lease_seconds=60)
        renewed = min(leases())
    finally:
        release.set()
        runner.join(30)
        slow.close()
    assert taken == [] and renewed > first


def test_the_numbered_head_is_alembics_head() -> None:
    """The fast start-up check (no alembic import on an up-to-date store) names the same head."""
    from catalogcap.store.database import numbered_head

    assert numbered_head() == head_revision()


def test_migration_0010_adds_the_prefix_index_on_postgresql_only_and_downgrades(store_url: str) -> None:
    from alembic import command

    from catalogcap.store.database import _alembic_config

    engine = create_store_engine(store_url)
    pattern = engine.dialect.name == "postgresql"

    def indexed() -> bool:
        return "ix_asset_paths_path_pattern" in {ix["name"] for ix in sa.inspect(engine).get_indexes("asset_paths")}

    assert indexed() is pattern
    command.downgrade(_alembic_config(engine), "0009")
    assert not indexed() and current_revision(engine) == "0009"
    upgrade(engine)
    assert indexed() is pattern and current_revision(engine) == head_revision() == "0010"
    if pattern:  # a rescan's per-folder LIKE 'folder/%' can use it
        with engine.connect() as conn:
            conn.exec_driver_sql("SET enable_seqscan = off")
            plan = " ".join(conn.execute(sa.text(
                "EXPLAIN SELECT id FROM asset_paths WHERE path LIKE '/srv/catalog/%'")).scalars())
        assert "ix_asset_paths_path_pattern" in plan, plan
    engine.dispose()
