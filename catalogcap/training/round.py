"""One training round: collect, train, evaluate candidate and active, gate, register, promote.

A round never touches the active adapter until the very last step (one transaction), so a
round that fails or is killed at any point changes nothing a captioner sees. Its work
folder (home/runs/RUN_ID) keeps the dataset it froze and per-epoch checkpoints, which is
what `catalogcap train --resume` continues from.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from catalogcap.errors import CatalogcapError
from catalogcap.settings import KINDS, Settings, TrainingSettings
from catalogcap.store.database import read_session, write_session
from catalogcap.store.models import TrainingRun, utcnow
from catalogcap.store.queue import pid_alive
from catalogcap.training import registry
from catalogcap.training.dataset import Dataset, collect

log = logging.getLogger("catalogcap.training")


@dataclass
class RoundResult:
    promoted: bool
    adapter: str | None
    candidate: dict[str, Any] = field(default_factory=dict)
    active: dict[str, Any] = field(default_factory=dict)
    train_size: int = 0
    val_size: int = 0
    reason: str = ""
    run_id: str | None = None
    active_adapter: str | None = None
    trained: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"promoted": self.promoted, "adapter": self.adapter, "candidate": self.candidate,
                "active": self.active, "train_size": self.train_size, "val_size": self.val_size,
                "reason": self.reason, "run_id": self.run_id, "active_adapter": self.active_adapter,
                **self.extra}


def last_run(engine: Engine) -> TrainingRun | None:
    with read_session(engine) as session:
        return session.exec(select(TrainingRun).order_by(col(TrainingRun.started_at).desc())).first()


def _last_finished(engine: Engine) -> TrainingRun | None:
    with read_session(engine) as session:
        return session.exec(
            select(TrainingRun).where(TrainingRun.state == "finished").order_by(col(TrainingRun.started_at).desc())
        ).first()


def _resumable(engine: Engine) -> TrainingRun | None:
    with read_session(engine) as session:
        runs = session.exec(select(TrainingRun).where(col(TrainingRun.state).in_(("running", "interrupted")))
                            .order_by(col(TrainingRun.started_at).desc())).all()
    for run in runs:
        if not pid_alive(run.pid) or run.pid == os.getpid():
            return run
    return None


def _prompts(settings: Settings) -> dict[str, str]:
    return {kind: settings.generation.for_kind(kind).prompt for kind in KINDS}


def plan(engine: Engine, settings: Settings) -> Dataset:
    previous = _last_finished(engine)
    return collect(engine, settings, since=previous.started_at if previous else None)


def run_round(engine: Engine, settings: Settings, *, force: bool = False, resume: bool = False,
              dry_run: bool = False, trigger: str = "manual",
              on_step: Callable[[int, int, float], None] | None = None) -> RoundResult:
    current = registry.active(engine)
    cfg = settings.training
    run: TrainingRun | None = _resumable(engine) if resume else None
    if resume and run is None:
        raise CatalogcapError("no interrupted training run to resume; start one with `catalogcap train`")
    run_dir = settings.home / "runs" / (run.id if run else "")
    if run is not None:
        settings = _settings_of(run, settings)  # finish it as it was started, whatever is configured now
        cfg = settings.training
        data = Dataset.from_json(json.loads((run_dir / "dataset.json").read_text(encoding="utf-8")))
    else:
        data = plan(engine, settings)
    result = RoundResult(False, None, train_size=len(data.train), val_size=len(data.val),
                         active_adapter=current.id if current else None, extra={"missing": data.missing,
                         "new_corrections": data.new_corrections})
    if run is None:
        if not force and data.new_corrections < cfg.min_new_corrections:
            result.reason = (f"only {data.new_corrections} new reviewed caption(s) since the last round; "
                             f"training.min_new_corrections is {cfg.min_new_corrections} (use --force)")
            return result
        if not data.train or not data.val:
            result.reason = (f"need reviewed captions in both splits; have {len(data.train)} to train on and "
                             f"{len(data.val)} held out")
            return result
        if dry_run:
            result.reason = "dry run: nothing trained"
            return result
        run_id = datetime.now(timezone.utc).strftime("run-%Y%m%d-%H%M%S-") + secrets.token_hex(2)
        run_dir = settings.home / "runs" / run_id
        run_dir.mkdir(parents=True)
        (run_dir / "dataset.json").write_text(json.dumps(data.to_json()), encoding="utf-8")
        config = {**cfg.model_dump(), "model": settings.model, "dataset": data.fingerprint,
                  "parent": current.id if current else None}
        run = TrainingRun(id=run_id, state="running", trigger=trigger, pid=os.getpid(), train_size=len(data.train),
                          val_size=len(data.val), config=config)
        with write_session(engine) as session:
            session.add(run)
    elif dry_run:
        result.reason = f"dry run: would resume {run.id}"
        return result
    else:
        with write_session(engine) as session:
            row = session.get(TrainingRun, run.id)
            row.pid, row.state = os.getpid(), "running"
            session.add(row)
    result.run_id = run.id
    try:
        _train_and_gate(engine, settings, run, run_dir, data, current, result, resume=resume, on_step=on_step)
    except BaseException as exc:
        with write_session(engine) as session:
            row = session.get(TrainingRun, run.id)
            # a resume that fails stays resumable: its checkpoint and dataset are still there
            row.state = "interrupted" if isinstance(exc, KeyboardInterrupt) or resume else "failed"
            row.reason = f"{type(exc).__name__}: {exc}"
            row.finished_at = utcnow()
            session.add(row)
        raise
    return result


def _settings_of(run: TrainingRun, settings: Settings) -> Settings:
    """`settings` with the training settings and base model `run` was started with."""
    saved = {key: value for key, value in (run.config or {}).items() if key in TrainingSettings.model_fields}
    training = TrainingSettings.model_validate(saved)
    model = (run.config or {}).get("model") or settings.model
    changed = sorted(key for key in saved if getattr(settings.training, key) != getattr(training, key))
    if changed or model != settings.model:
        log.warning("resuming %s with the settings it started with; ignoring today's %s", run.id,
                    ", ".join([f"training.{key}" for key in changed] + (["model"] if model != settings.model else [])))
    return settings.model_copy(update={"training": training, "model": model})


def _train_and_gate(engine, settings, run, run_dir, data, current, result, *, resume, on_step) -> None:
    from catalogcap.captioner.generate import Captioner
    from catalogcap.captioner.model import load_model
    from catalogcap.training.evaluate import evaluate
    from catalogcap.training.trainer import train

    # fp32 master weights everywhere; on CUDA the trainer autocasts to bf16
    base = load_model(settings.model, revision=settings.model_revision, device=settings.device, dtype="float32")
    trained = train(base.model, base.processor, data.train, settings, run_dir, resume=resume,
                    prompts=_prompts(settings), on_step=on_step)
    result.trained = True
    adapter_id = registry.new_adapter_id()
    candidate_model = load_model(settings.model, revision=settings.model_revision, device=settings.device,
                                 dtype=settings.dtype, adapter_dir=trained.adapter_dir, adapter_id=adapter_id)
    result.candidate = evaluate(Captioner(candidate_model, settings), data.val, settings)
    del candidate_model
    active_model = load_model(settings.model, revision=settings.model_revision, device=settings.device,
                              dtype=settings.dtype, adapter_dir=Path(current.path) if current else None,
                              adapter_id=current.id if current else None)
    result.active = evaluate(Captioner(active_model, settings), data.val, settings)
    metric, margin = settings.training.gate_metric, settings.training.gate_margin
    new, old = result.candidate[metric], result.active[metric]
    metrics = {"candidate": result.candidate, "active": result.active, "gate": metric, "margin": margin,
               "train": {"steps": trained.steps, "final_loss": trained.final_loss,
                         "samples_per_second": trained.samples_per_second, "skipped": trained.skipped}}
    registry.register_candidate(engine, settings.home, trained.adapter_dir, adapter_id=adapter_id,
                                base_model=settings.model, parent_id=current.id if current else None,
                                metrics=metrics, config=run.config)
    result.adapter = adapter_id
    against = current.id if current else "the base model"
    if new >= old + margin:
        result.reason = f"{metric} {new:.4f} beats {against} ({old:.4f}) by at least {margin}"
        registry.promote(engine, adapter_id, reason=result.reason)
        result.promoted = True
    else:
        result.reason = f"{metric} {new:.4f} does not beat {against} ({old:.4f}) by {margin}; not promoted"
        registry.reject(engine, adapter_id, result.reason)
    with write_session(engine) as session:
        row = session.get(TrainingRun, run.id)
        row.state, row.finished_at, row.adapter_id = "finished", utcnow(), adapter_id
        row.promoted, row.reason, row.metrics = result.promoted, result.reason, metrics
        session.add(row)
    shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)
    log.info("training round %s: %s", run.id, result.reason)

