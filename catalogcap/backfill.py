"""Bulk captioning of what the store has queued: on a Ray cluster (Ray Data's actor pool) or
in this process, with the same plan and the same per-batch code either way.

The plan is the runnable jobs (pending, or running under a lease that ran out), oldest first,
optionally only those of images under given folders. It is cut into batches; each batch goes
to a `CaptionJobs` runner (a Ray actor, or one in-process), which is a `Worker` with its own
lease owner id: it claims exactly the planned jobs that are still runnable (`claim(job_ids=)`,
atomic, `FOR UPDATE SKIP LOCKED` on PostgreSQL), decodes and captions them with catalogcap's
own captioner (engine, active adapter, prompts, cleaning rules, provenance) and commits each
image's captions with its job, as `catalogcap worker` does. So:

- a job a worker (or another backfill) took first is skipped, never captioned twice;
- a backfill interrupted and rerun plans again from the store and resumes where it stopped;
- a Ray actor that dies mid-batch leaves its jobs running under an owner id that carries this
  run's id: when the pool is done the driver returns them to the queue and runs another pass
  over them (at most `PASSES`), so none is lost and none is doubled.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from catalogcap.errors import CatalogcapError
from catalogcap.settings import Settings
from catalogcap.store.database import read_session, write_session
from catalogcap.store.models import AssetPath, Job, utcnow
from catalogcap.store.queue import _runnable, new_owner, recover_stale
from catalogcap.worker.adapters import CaptionerFactory

log = logging.getLogger("catalogcap.backfill")

RAY_VERSION = "2.60.0"  # the version `catalogcap[ray]` pins and the tests run
PASSES = 3  # the pool, then up to two passes over jobs whose actor died
ENGINES = ("ray", "local")


@dataclass
class BackfillSummary:
    images: int = 0  # jobs planned
    captioned: int = 0
    failed: int = 0  # refused for good (a bad file): quarantined as the worker does
    retrying: int = 0  # a passing error: the job waits for its backoff in the queue
    skipped: int = 0  # taken by another worker before their turn
    seconds: float = 0.0
    passes: int = 0
    actors: int = 0

    def add(self, row: dict[str, Any]) -> None:
        self.captioned += int(row["captioned"])
        self.failed += int(row["failed"])
        self.retrying += int(row["retrying"])
        self.skipped += int(row["planned"]) - int(row["claimed"])

    @property
    def img_s(self) -> float:
        return round(self.captioned / self.seconds, 2) if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"images": self.images, "captioned": self.captioned, "failed": self.failed,
                "seconds": round(self.seconds, 2), "img_s": self.img_s}


def plan(engine: Engine, roots: list[Path] | None = None) -> list[int]:
    """The runnable job ids, oldest first; with `roots`, only jobs of images that have a live
    path under one of them."""
    now = utcnow()
    query = select(Job.id).where(_runnable(now)).order_by(col(Job.run_after), col(Job.id))
    if roots:
        under = [col(AssetPath.path).startswith(str(root.absolute()).rstrip(os.sep) + os.sep, autoescape=True)
                 for root in roots]
        query = query.where(col(Job.asset_id).in_(
            select(AssetPath.asset_id).where(col(AssetPath.missing).is_(False), sa.or_(*under))))
    with read_session(engine) as session:
        return list(session.exec(query).all())


def batches(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


class CaptionJobs:
    """Captions planned batches of job ids: one per Ray actor, or one in the local engine.

    Ray Data calls it with {"job_id": array}; `run` takes a plain list. Each call claims, captions
    and commits one batch and returns one row of counts."""

    def __init__(self, settings: Settings, run_id: str, *, plugins: bool = True,
                 captioner_factory: CaptionerFactory | None = None) -> None:
        from catalogcap.store.database import create_store_engine
        from catalogcap.worker import Worker

        self.engine = create_store_engine(settings.db_url, migrate=False)
        on_captions = None
        if plugins:
            from catalogcap.plugins import Hooks

            on_captions = Hooks(self.engine, settings.plugins, settings=settings).captions_created
        self.worker = Worker(self.engine, settings, owner=new_owner(f"backfill-{run_id}"),
                             captioner_factory=captioner_factory, on_captions=on_captions)

    def run(self, job_ids: list[int]) -> dict[str, int]:
        result = self.worker.run_batch(job_ids=job_ids)
        return {"planned": len(job_ids), "claimed": result.claimed, "captioned": result.captioned,
                "failed": result.failed, "retrying": result.retrying}

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[int]]:
        row = self.run([int(i) for i in batch["job_id"]])
        return {key: [value] for key, value in row.items()}

    def close(self) -> None:
        self.worker.close()
        self.engine.dispose()


def orphans(engine: Engine, run_id: str, planned: list[int]) -> list[int]:
    """Return to the queue the jobs left running by this run's actors (all of which have
    finished when this is called: any such job's actor died mid-batch) and give back the
    planned jobs that are runnable again. The attempt the dead actor made still counts."""
    tag = f"%:backfill-{run_id}:%"
    now = utcnow()
    with write_session(engine) as session:
        session.execute(
            sa.update(Job).where(Job.state == "running", col(Job.lease_owner).like(tag))
            .values(state="pending", lease_owner=None, lease_expires=None, run_after=now, updated_at=now))
    wanted = set(planned)
    return [job_id for job_id in plan(engine) if job_id in wanted]


def _ray_pass(ids: list[int], settings: Settings, run_id: str, *, workers: int, gpus_per_worker: float,
              batch_size: int, captioner_factory: CaptionerFactory | None,
              on_row: Callable[[dict[str, int]], None]) -> None:
    import ray.data

    dataset = ray.data.from_items([{"job_id": job_id} for job_id in ids],
                                  override_num_blocks=max(1, min(len(ids) // batch_size, workers * 4)))
    captioned = dataset.map_batches(
        CaptionJobs, fn_constructor_args=(settings, run_id),
        fn_constructor_kwargs={"captioner_factory": captioner_factory},
        batch_size=batch_size, batch_format="numpy", concurrency=workers,
        num_gpus=gpus_per_worker or None, num_cpus=1 if not gpus_per_worker else None)
    for row in captioned.iter_rows():
        on_row({key: int(value) for key, value in row.items()})


def _start_ray(address: str | None, workers: int) -> Any:
    try:
        import ray
    except ImportError:
        raise CatalogcapError(
            f"--engine ray needs Ray: pip install 'catalogcap[ray]' (ray[data]=={RAY_VERSION}); or use --engine local"
        ) from None
    if ray.__version__ != RAY_VERSION:
        log.warning("Ray %s is installed; catalogcap is tested with %s", ray.__version__, RAY_VERSION)
    if not ray.is_initialized():
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address:
            options["address"] = address
        else:  # a local cluster the size of the pool (each actor holds one model)
            options["num_cpus"] = max(workers, 1) + 1
        try:
            ray.init(**options)
        except (ConnectionError, RuntimeError) as exc:
            raise CatalogcapError(f"could not reach the Ray cluster at {address or 'a new local one'}: {exc}") from None
    return ray


def backfill(engine: Engine, settings: Settings, *, roots: list[Path] | None = None, engine_name: str = "local",
             address: str | None = None, workers: int = 2, gpus_per_worker: float = 0.0,
             batch_size: int | None = None, captioner_factory: CaptionerFactory | None = None,
             progress: Callable[[dict[str, int]], None] | None = None) -> BackfillSummary:
    """Caption every runnable job (of images under `roots`, if given) on `engine_name`."""
    if engine_name not in ENGINES:
        raise CatalogcapError(f"unknown backfill engine {engine_name!r}; use one of {', '.join(ENGINES)}")
    batch_size = batch_size or settings.batch_size
    run_id = uuid.uuid4().hex[:12]
    recover_stale(engine)  # jobs a dead process on this host left running are planned too
    planned = plan(engine, roots)
    summary = BackfillSummary(images=len(planned), actors=workers if engine_name == "ray" else 1)
    started = time.perf_counter()

    def on_row(row: dict[str, int]) -> None:
        summary.add(row)
        if progress is not None:
            progress(row)

    todo = planned
    ray = _start_ray(address, workers) if engine_name == "ray" and todo else None
    local: CaptionJobs | None = None
    try:
        while todo and summary.passes < PASSES:
            summary.passes += 1
            if ray is not None:
                try:
                    _ray_pass(todo, settings, run_id, workers=workers, gpus_per_worker=gpus_per_worker,
                              batch_size=batch_size, captioner_factory=captioner_factory, on_row=on_row)
                except ray.exceptions.RayError as exc:  # the pool gave up (actors kept dying): retry below
                    log.warning("the Ray pass ended early (%s); its unfinished jobs are planned again", exc)
            else:
                local = local or CaptionJobs(settings, run_id, captioner_factory=captioner_factory)
                for ids in batches(todo, batch_size):
                    on_row(local.run(ids))
            todo = orphans(engine, run_id, planned)
            if todo:
                log.warning("%d job(s) were left running by an actor that died; captioning them again", len(todo))
                summary.skipped -= len(todo)  # counted as skipped by the pass that lost them
    finally:
        if local is not None:
            local.close()
    summary.seconds = time.perf_counter() - started
    return summary
