"""Batches: claim jobs, read the images, caption, commit.

Captions and the job's completion are written in one transaction, so a crash between
captioning and committing loses nothing: the job's lease expires (or its dead owner is
noticed) and it is captioned again. A bad image fails only its own job: a batch that
raises is split into single images so the good ones still get captioned.

With prompt templates that name product fields, the product context of every claimed asset
is read once per batch (`resolve_contexts`, two queries) and each caption stores the fields,
template and rendered prompt it used; with [[profiles]], each caption stores its profile.
Without either, nothing of this runs.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from catalogcap import images
from catalogcap.errors import ModelLoadError
from catalogcap.intake import rejection_reason
from catalogcap.products.consistency import known_context
from catalogcap.products.prompts import ImageRequest, resolve_contexts, uses_context
from catalogcap.settings import KINDS, Settings
from catalogcap.store.captions import save_model_captions
from catalogcap.store.database import read_session, write_session
from catalogcap.store.models import Asset, AssetPath, Product, utcnow
from catalogcap.store.paths import LIVE_FIRST
from catalogcap.store.queue import Claimed, claim, complete, fail, new_owner, release, runnable_count
from catalogcap.worker.adapters import CaptionerCache, CaptionerFactory
from catalogcap.worker.captioner import BatchCaptioner, PixelReader
from catalogcap.worker.leases import LeaseKeeper

log = logging.getLogger("catalogcap.worker")


@dataclass
class BatchResult:
    claimed: int = 0
    captioned: int = 0
    retrying: int = 0
    failed: int = 0
    rejections: list[dict[str, str]] = field(default_factory=list)
    caption_ids: list[int] = field(default_factory=list)

    def merge(self, other: BatchResult) -> None:
        self.claimed += other.claimed
        self.captioned += other.captioned
        self.retrying += other.retrying
        self.failed += other.failed
        self.rejections += other.rejections
        self.caption_ids += other.caption_ids


@dataclass
class _Reading:
    """A claimed batch whose images are being read, its leases kept alive."""

    claimed: list[Claimed]
    paths: dict[int, Path]
    loads: dict[int, Future[tuple[Any, str | None, bool]]]
    keeper: LeaseKeeper

    def held(self) -> list[int]:
        return [c.job_id for c in self.claimed]


class Worker:
    """Captions queued jobs with the model and the active adapter (reloaded when it changes)."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        owner: str | None = None,
        captioner_factory: CaptionerFactory | None = None,
        on_captions: Callable[[list[int]], None] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.owner = owner or new_owner()
        self._captioners = CaptionerCache(engine, settings, captioner_factory)
        threads = settings.engine.decode_threads or min(8, os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="catalogcap-decode")
        self.on_captions = on_captions
        self.captioned_total = 0  # images captioned by `run_until`
        self.errors = 0  # unexpected errors `run_until` survived
        self._ahead: _Reading | None = None  # the next batch, claimed and being read (read_ahead)

    def captioner(self) -> BatchCaptioner:
        """The captioner for the adapter active now (reloaded when it changed)."""
        return self._captioners.get()

    def close(self) -> None:
        """Give back the batch read ahead (its attempt not counted) and stop the decode threads."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.keeper.__exit__(None, None, None)
            release(self.engine, self.owner, ahead.held())
        self._pool.shutdown(wait=True)

    @property
    def holds_ahead(self) -> bool:
        """Whether a batch read ahead waits for the model (its jobs are running, not runnable)."""
        return self._ahead is not None

    def run_until(self, stop: threading.Event, wake: threading.Event) -> None:
        """Caption batches until `stop` is set; `wake` cuts the idle wait short when work arrives.

        A batch smaller than the batch size waits up to `queue.max_wait_seconds` for a burst to
        fill it. An unexpected error is logged and counted, and the loop backs off (2 s more per
        consecutive error, at most 30 s) instead of dying: the jobs stay in the queue.
        """
        max_wait = self.settings.queue.max_wait_seconds
        failures = 0
        said = ""  # the last model error logged: a model that will not load is said once, not every retry
        while not stop.is_set():
            try:
                wake.clear()  # before counting, so a wake-up during the count is not lost
                with read_session(self.engine) as session:
                    queued = runnable_count(session)
                if queued == 0 and not self.holds_ahead:
                    wake.wait(1.0)
                    continue
                if queued < self.settings.batch_size and max_wait > 0 and not self.holds_ahead:
                    stop.wait(max_wait)
                result = self.run_batch()
                self.captioned_total += result.captioned
                if result.claimed:
                    log.info("captioned %d, retrying %d, failed %d", result.captioned, result.retrying,
                             result.failed)
                failures, said = 0, ""
            except ModelLoadError as exc:
                failures += 1
                self.errors += 1
                if str(exc) != said:
                    log.error("%s; jobs stay queued until it loads", exc)
                    said = str(exc)
                stop.wait(min(2.0 * failures, 30.0))
            except Exception:
                failures += 1
                self.errors += 1
                log.exception("worker batch failed; continuing")
                stop.wait(min(2.0 * failures, 30.0))

    def run_batch(self, limit: int | None = None, *, job_ids: list[int] | None = None) -> BatchResult:
        """Claim and caption up to `limit` (batch size) jobs; an empty result means no work.
        With `job_ids` (a backfill's planned batch), only those that are still runnable.

        With `queue.read_ahead`, the batch read ahead by the previous call is captioned first,
        and before the model starts on this batch the next one is claimed (if jobs wait) and its
        images are read in the decode threads meanwhile; its leases are kept from its claim on."""
        limit = len(job_ids) if job_ids is not None else (limit or self.settings.batch_size)
        captioner = self.captioner()  # a model that cannot load fails here, before any job is claimed
        reading: _Reading | None = None
        if job_ids is None:
            reading, self._ahead = self._ahead, None
        if reading is None:
            claimed = claim(self.engine, self.owner, limit, lease_seconds=self.settings.queue.lease_seconds,
                            job_ids=job_ids)
            if not claimed:
                return BatchResult()
            reading = self._read(claimed, captioner)
        result = BatchResult(claimed=len(reading.claimed))
        try:
            if job_ids is None and self.settings.queue.read_ahead:
                self._ahead = self._read_ahead(captioner, limit)
            return self._run_claimed(reading, captioner, result)
        except BaseException as exc:
            # not the images' fault (the model would not load, the process is stopping...): the
            # jobs go back to the queue now instead of sitting in "running" until the lease ends
            error = f"{type(exc).__name__}: {exc}"[:2000]
            release(self.engine, self.owner, reading.held(), error=error)
            ahead, self._ahead = self._ahead, None
            if ahead is not None:
                ahead.keeper.__exit__(None, None, None)
                release(self.engine, self.owner, ahead.held())
            raise
        finally:
            reading.keeper.__exit__(None, None, None)

    def _read(self, claimed: list[Claimed], captioner: BatchCaptioner) -> _Reading:
        """Start keeping the leases of a claimed batch and reading its images in the decode threads."""
        keeper = LeaseKeeper(self.engine, self.owner, [c.job_id for c in claimed], self.settings.queue.lease_seconds)
        keeper.__enter__()
        try:
            paths = self._paths([c.asset_id for c in claimed])
            target = captioner.image_size
            read = captioner.load_pixels if isinstance(captioner, PixelReader) else None  # off the model's thread
            loads = {c.job_id: self._pool.submit(self._load, paths.get(c.asset_id), target, read) for c in claimed}
        except BaseException:
            keeper.__exit__(None, None, None)
            release(self.engine, self.owner, [c.job_id for c in claimed])
            raise
        return _Reading(claimed, paths, loads, keeper)

    def _read_ahead(self, captioner: BatchCaptioner, limit: int) -> _Reading | None:
        """Claim the next batch now, if jobs wait, and start reading it."""
        with read_session(self.engine) as session:
            if runnable_count(session) == 0:
                return None
        claimed = claim(self.engine, self.owner, limit, lease_seconds=self.settings.queue.lease_seconds)
        return self._read(claimed, captioner) if claimed else None

    def _run_claimed(self, reading: _Reading, captioner: BatchCaptioner, result: BatchResult) -> BatchResult:
        paths = reading.paths
        ready: list[tuple[Claimed, Any]] = []
        for job in reading.claimed:
            image, error, permanent = reading.loads[job.job_id].result()
            if image is None and job.asset_id not in paths:
                # the file went away (moved, renamed, deleted) before its turn: not the image's
                # fault, so the asset is not rejected; when the bytes turn up again, intake queues it
                self._fail(job, error, permanent=True, result=result, path=self._last_path(job.asset_id),
                           reject_asset=False)
            elif image is None:
                self._fail(job, error, permanent=permanent, result=result, path=paths.get(job.asset_id))
            else:
                ready.append((job, image))
        requests = self._requests(captioner, ready, paths)
        self._caption(captioner, ready, result, requests)
        if self.on_captions and result.caption_ids:
            self.on_captions(list(result.caption_ids))
        return result

    def drain(self, progress: Callable[[BatchResult], None] | None = None,
              stop: threading.Event | None = None) -> BatchResult:
        """Caption until no job is runnable now (retries scheduled for later are left)."""
        total = BatchResult()
        while stop is None or not stop.is_set():
            batch = self.run_batch()
            if not batch.claimed:
                break
            total.merge(batch)
            if progress is not None:
                progress(batch)
        return total

    def _requests(self, captioner: BatchCaptioner, ready: list[tuple[Claimed, Any]], paths: dict[int, Path]
                  ) -> dict[int, tuple[ImageRequest, list[dict[str, Any]]]] | None:
        """Per job: the image's path and product fields, and the context's sources; None when the
        captioner renders no per-image prompts (no field templates, no profiles)."""
        if not ready or not getattr(captioner, "per_image", False):
            return None
        contexts = {}
        if uses_context(self.settings):
            with read_session(self.engine) as session:
                contexts = resolve_contexts(session, [job.asset_id for job, _ in ready])
        found = {}
        for job, _ in ready:
            context = contexts.get(job.asset_id)
            found[job.job_id] = (ImageRequest(str(paths.get(job.asset_id) or ""),
                                              dict(context.fields) if context else {}),
                                 list(context.sources) if context else [])
        return found

    def _known_contexts(self, asset_ids: list[int]) -> dict[int, Any]:
        """The product data of the batch's images (for consistency warnings), read in two queries;
        nothing when the store has no product data at all (one cheap query)."""
        with read_session(self.engine) as session:
            if session.exec(select(Product.id).limit(1)).first() is None:
                return {}
            return resolve_contexts(session, asset_ids)

    def _paths(self, asset_ids: list[int]) -> dict[int, Path]:
        found: dict[int, Path] = {}
        with read_session(self.engine) as session:
            rows = session.exec(
                select(AssetPath).where(col(AssetPath.asset_id).in_(asset_ids)).order_by(*LIVE_FIRST)
            ).all()
        for row in rows:
            if row.asset_id not in found and Path(row.path).is_file():
                found[row.asset_id] = Path(row.path)
        return found

    def _load(self, path: Path | None, target: int | None,
              read: Callable[[Path], Any] | None = None) -> tuple[Any, str | None, bool]:
        if path is None:
            return None, "no file of this asset is present any more (moved away or deleted)", True
        try:
            if read is not None:
                return read(path), None, False
            image = images.load(path, max_pixels=self.settings.max_pixels,
                                max_bytes=int(self.settings.max_file_mb * 2**20), target_size=target)
            return image, None, False
        except images.ImageRejected as exc:
            return None, rejection_reason(exc), exc.code != "unreadable"

    def _caption(self, captioner: BatchCaptioner, ready: list[tuple[Claimed, Any]], result: BatchResult,
                 requests: dict[int, tuple[ImageRequest, list[dict[str, Any]]]] | None = None) -> None:
        if not ready:
            return
        try:
            if requests is None:
                caption_sets = captioner.caption_images([image for _, image in ready])
            else:
                caption_sets = captioner.caption_images(  # type: ignore[call-arg]
                    [image for _, image in ready], [requests[job.job_id][0] for job, _ in ready])
        except Exception as exc:  # a model error on a batch: retry image by image
            if len(ready) > 1:
                log.warning("batch of %d failed (%s); captioning one by one", len(ready), exc)
                for item in ready:
                    self._caption(captioner, [item], result, requests)
                return
            job, _ = ready[0]
            log.exception("captioning failed for job %s", job.job_id)
            self._fail(job, f"captioning failed: {type(exc).__name__}: {exc}", permanent=False, result=result)
            return
        generation = {kind: captioner.generation_record(kind) for kind in KINDS}
        by_profile: dict[str, dict[str, dict[str, Any]]] = {}
        known = self._known_contexts([job.asset_id for job, _ in ready])
        now = utcnow()
        with write_session(self.engine) as session:
            for (job, _), captions in zip(ready, caption_sets):
                if not complete(session, job.job_id, self.owner):
                    log.warning("lease on job %s was lost; its captions are left to the new owner", job.job_id)
                    continue
                profile = getattr(captions, "profile", None) if requests is not None else None
                record = generation
                if profile is not None:
                    if profile not in by_profile:
                        by_profile[profile] = {kind: captioner.generation_record(kind, profile)  # type: ignore[call-arg]
                                               for kind in KINDS}
                    record = by_profile[profile]
                context = None
                if requests is not None:
                    sources = requests[job.job_id][1]
                    context = {kind: captions.provenance(kind, sources) for kind in KINDS}  # type: ignore[attr-defined]
                catalog = known.get(job.asset_id)
                if catalog:  # what the catalog says of the image: checked by warnings whatever the prompt used
                    context = {kind: ({**used, "product": dict(catalog.fields)} if (used := (context or {}).get(kind))
                                      else known_context(catalog.fields, catalog.sources)) for kind in KINDS}
                limit = record["alt_text"].get("limit", self.settings.alt_text_limit)
                saved = save_model_captions(session, job.asset_id, captions.texts, model=captioner.model_id,
                                            adapter_id=captioner.adapter_id, generation=record, context=context,
                                            profile=profile, alt_text_limit=limit)
                asset = session.get(Asset, job.asset_id)
                if asset is not None:
                    asset.state, asset.error, asset.updated_at = "captioned", None, now
                    session.add(asset)
                result.captioned += 1
                result.caption_ids.extend(c.id for c in saved)

    def _last_path(self, asset_id: int) -> Path | None:
        with read_session(self.engine) as session:
            row = session.exec(select(AssetPath).where(AssetPath.asset_id == asset_id)
                               .order_by(col(AssetPath.last_seen).desc())).first()
        return Path(row.path) if row is not None else None

    def _fail(self, job: Claimed, error: str | None, *, permanent: bool, result: BatchResult,
              path: Path | None = None, reject_asset: bool = True) -> None:
        q = self.settings.queue
        error = error or "unknown error"
        with write_session(self.engine) as session:
            state = fail(session, job.job_id, self.owner, error, permanent=permanent, max_attempts=q.max_attempts,
                         backoff_seconds=q.retry_backoff_seconds, backoff_max_seconds=q.retry_backoff_max_seconds)
            if state == "failed" and reject_asset:
                asset = session.get(Asset, job.asset_id)
                if asset is not None:
                    asset.state, asset.error, asset.updated_at = "rejected", error, utcnow()
                    session.add(asset)
        if state == "failed":
            result.failed += 1
            result.rejections.append({"path": str(path) if path else f"asset {job.asset_id}", "reason": error})
            log.warning("%s: %s", path or f"asset {job.asset_id}", error)
        else:
            result.retrying += 1
