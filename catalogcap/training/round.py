"""One training round: collect, train, evaluate candidate and active, gate, register, promote.

A round never touches the active adapter until the very last step (one transaction), so a
round that fails or is killed at any point changes nothing a captioner sees. Its work
folder (home/runs/RUN_ID) keeps the dataset it froze and per-epoch checkpoints, which is
what `catalogcap train --resume` continues from.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from catalogcap.errors import CatalogcapError, TrainingInterrupted
from catalogcap.settings import KINDS, Settings, TrainingSettings
from catalogcap.store.database import read_session, write_session
from catalogcap.store.models import TrainingRun, utcnow
from catalogcap.store.queue import pid_alive
from catalogcap.training import registry
from catalogcap.training.dataset import Dataset, collect
from catalogcap.training.policy import Budget
from catalogcap.training.prompting import ExamplePrompts

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
                "trained": self.trained, **self.extra}


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
    """One prompt per kind: the templates as they are (without product context)."""
    return {kind: settings.generation.for_kind(kind).prompt for kind in KINDS}


def example_prompts(engine: Engine, settings: Settings, data: Dataset) -> ExamplePrompts:
    """The prompt of each example rendered from today's templates and product context (see
    catalogcap/training/prompting.py), for training, dev scoring and the gate alike."""
    return ExamplePrompts.build(engine, settings, [*data.train, *data.val])


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
    from catalogcap.training.distributed import resolve_processes

    result = RoundResult(False, None, train_size=len(data.train), val_size=len(data.val),
                         active_adapter=current.id if current else None, extra={"missing": data.missing,
                         "new_corrections": data.new_corrections, "val_images": data.val_images,
                         "processes": resolve_processes(settings)})
    if run is None:
        refusal = _refusal(data, cfg, force=force)
        if refusal:
            result.reason = f"would refuse: {refusal}" if dry_run else refusal
            return result
        if dry_run:
            budget = Budget.plan(len(data.train), cfg)
            result.reason = (f"would train: {len(data.train)} reviewed captions, held out {data.val_images} images; "
                             f"{budget.steps} steps per learning rate ({budget.rule}), learning rates "
                             f"{', '.join(f'{lr:g}' for lr in budget.lrs)}, within {cfg.max_minutes:g} minutes"
                             + (f", in {cfg.processes or 'one per GPU'} processes" if cfg.processes != 1 else ""))
            result.extra["policy"] = {"steps": budget.steps, "lrs": budget.lrs, "rule": budget.rule}
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
        result.reason = f"would resume {run.id}"
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
            interrupted = isinstance(exc, (KeyboardInterrupt, TrainingInterrupted)) or resume
            row.state = "interrupted" if interrupted else "failed"
            row.reason = f"{type(exc).__name__}: {exc}"
            row.finished_at = utcnow()
            session.add(row)
        raise
    return result


def _refusal(data: Dataset, cfg: TrainingSettings, *, force: bool) -> str:
    """Why a round must not run on `data`, or "" when it may."""
    if not force and data.new_corrections < cfg.min_new_corrections:
        return (f"only {data.new_corrections} new reviewed caption(s) since the last round; "
                f"training.min_new_corrections is {cfg.min_new_corrections} (use --force)")
    if data.val_images < cfg.min_val_images:
        short = cfg.min_val_images - data.val_images
        return (f"too little evidence: the held-out set has {data.val_images} image(s) and training.min_val_images "
                f"is {cfg.min_val_images}; review about {math.ceil(short * 100 / cfg.val_percent)} more images "
                f"(training.val_percent = {cfg.val_percent:g}) — nothing was trained")
    if not data.train:
        return f"no reviewed captions to train on ({data.val_images} held-out images, none in training)"
    return ""


def _settings_of(run: TrainingRun, settings: Settings) -> Settings:
    """`settings` with the training settings and base model `run` was started with."""
    saved = {key: value for key, value in (run.config or {}).items() if key in TrainingSettings.model_fields}
    # how many processes train is today's choice: a resume may have other GPUs (same global batch)
    saved["processes"] = settings.training.processes
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
    from catalogcap.training.distributed import train_in_processes
    from catalogcap.training.evaluate import evaluate, paired_interval
    from catalogcap.training.facts import FactVocabulary
    from catalogcap.training.trainer import train

    cfg = settings.training
    started = time.monotonic()
    # a quarter of the time budget is kept for evaluating candidate and active on the held-out set
    deadline = started + cfg.max_minutes * 60 * 0.75

    prompts = example_prompts(engine, settings, data)
    processes = result.extra["processes"]  # resolve_processes, when the round began
    if processes > 1:  # the ranks train; this process keeps the round (store, evaluation, gate)
        trained = train_in_processes(settings, run_dir, data.train, prompts, processes=processes, resume=resume,
                                     deadline=deadline, on_step=on_step)
    else:
        bases = _Bases(settings)
        trained = train(bases, bases.processor, data.train, settings, run_dir, resume=resume,
                        prompts=prompts, deadline=deadline, on_step=on_step)
        del bases
    if trained.unprompted:
        log.info("%d example(s) no longer start with their rendered prompt (rewritten by a reviewer):"
                 " trained unprompted", trained.unprompted)
    result.trained = True
    vocabulary = FactVocabulary.learn(e.text for e in [*data.train, *data.val])
    adapter_id = registry.new_adapter_id()
    candidate_model = load_model(settings.model, revision=settings.model_revision, device=settings.device,
                                 dtype=settings.dtype, adapter_dir=trained.adapter_dir, adapter_id=adapter_id)
    candidate = evaluate(Captioner(candidate_model, settings), data.val, settings, vocabulary=vocabulary,
                         prompts=prompts)
    del candidate_model
    # the model captioning today: the active adapter, unless it was made for another base model
    # (then the base model captions, as in the worker: registry.foreign is the one test of it)
    usable = None if registry.foreign(current, settings.model) else current
    active_model = load_model(settings.model, revision=settings.model_revision, device=settings.device,
                              dtype=settings.dtype, adapter_dir=Path(usable.path) if usable else None,
                              adapter_id=usable.id if usable else None)
    active = evaluate(Captioner(active_model, settings), data.val, settings, vocabulary=vocabulary,
                      prompts=prompts)
    del active_model
    result.candidate, result.active = candidate.summary, active.summary
    metric, margin = cfg.gate_metric, cfg.gate_margin
    low, high = paired_interval(candidate, active, metric, confidence=cfg.gate_confidence, seed=cfg.seed)
    against = usable.id if usable else "the base model"
    verdict = gate(candidate.summary, active.summary, (low, high), cfg, against=against)
    result.reason = verdict.reason
    policy = {"lr": trained.lr, "steps": trained.steps, "budget": trained.budget, "search": trained.search,
              "dev_images": trained.dev_images, "embed_cache": trained.embed_cache, "dev_before": trained.dev_before,
              "processes": trained.processes,
              "samples_per_second": round(trained.samples_per_second, 1),
              "seconds": round(time.monotonic() - started, 1)}
    result.extra.update(processes=trained.processes, gate_interval=[low, high], gate=metric, margin=margin,
                        checks=verdict.checks, policy=policy, fact_kinds=vocabulary.to_json())
    metrics = {"candidate": result.candidate, "active": result.active, "gate": metric, "margin": margin,
               "gate_interval": [low, high], "checks": verdict.checks, "fact_vocabulary": vocabulary.to_json(),
               "train": {"steps": trained.steps, "final_loss": trained.final_loss, "lr": trained.lr,
                         "samples_per_second": trained.samples_per_second, "skipped": trained.skipped},
               "policy": policy}
    registry.register_candidate(engine, settings.home, trained.adapter_dir, adapter_id=adapter_id,
                                base_model=settings.model, parent_id=current.id if current else None,
                                metrics=metrics, config=run.config)
    result.adapter = adapter_id
    if verdict.promote:
        registry.promote(engine, adapter_id, reason=result.reason)
        result.promoted = True
    else:
        registry.reject(engine, adapter_id, result.reason)
    with write_session(engine) as session:
        row = session.get(TrainingRun, run.id)
        row.state, row.finished_at, row.adapter_id = "finished", utcnow(), adapter_id
        row.promoted, row.reason, row.metrics = result.promoted, result.reason, metrics
        session.add(row)
    for leftover in ("checkpoint", "embeds", "search", "processes.json", "trained.json"):
        path = run_dir / leftover
        path.unlink() if path.is_file() else shutil.rmtree(path, ignore_errors=True)
    log.info("training round %s: %s", run.id, result.reason)


class _Bases:
    """Fresh base models for the trainer (one per learning rate tried); the first is loaded up front."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        loaded = self._load()
        self.processor = loaded.processor
        self._first: Any = loaded.model

    def _load(self) -> Any:
        from catalogcap.captioner.model import load_model

        s = self.settings
        # fp32 master weights everywhere; on CUDA the trainer autocasts to bf16
        loaded = load_model(s.model, revision=s.model_revision, device=s.device, dtype="float32")
        if s.engine.sdpa:
            from catalogcap.captioner.fast import enable_sdpa

            enable_sdpa(loaded.model)
        return loaded

    def __call__(self) -> Any:
        if self._first is not None:
            model, self._first = self._first, None
            return model
        return self._load().model


@dataclass
class Verdict:
    promote: bool
    reason: str
    checks: dict[str, Any]


def gate(candidate: dict[str, Any], active: dict[str, Any], interval: tuple[float, float], cfg: TrainingSettings,
         *, against: str) -> Verdict:
    """Promote only if the gate metric beats the active by the margin, surely (the lower end of the
    bootstrap interval clears it), and no more product facts are wrong or missing than before."""
    metric, margin = cfg.gate_metric, cfg.gate_margin
    new, old = candidate[metric], active[metric]
    low = interval[0]
    checks: dict[str, Any] = {
        "metric": new - old >= margin and low >= margin,
        "fact_errors": (candidate.get("fact_error_rate") is None or active.get("fact_error_rate") is None
                        or candidate["fact_error_rate"] <= active["fact_error_rate"] + cfg.fact_error_tolerance),
        "fact_recall": (candidate.get("fact_recall") is None or active.get("fact_recall") is None
                        or candidate["fact_recall"] >= active["fact_recall"] - cfg.fact_recall_tolerance),
    }
    if not checks["metric"]:
        why = (f"{metric} {new:.4f} does not beat {against} ({old:.4f}) by {margin}" if new - old < margin else
               f"{metric} {new:.4f} beats {against} ({old:.4f}) but not surely: the lower end of the "
               f"{cfg.gate_confidence:.0%} interval of the difference is {low:.4f}, under the margin {margin}")
    elif not checks["fact_errors"]:
        why = (f"more product facts wrong: {candidate['fact_error_rate']:.1%} of the facts it states contradict "
               f"the reviewers vs {active['fact_error_rate']:.1%} for {against} "
               f"(tolerance {cfg.fact_error_tolerance:.0%})")
    elif not checks["fact_recall"]:
        why = (f"fewer product facts named: fact recall {candidate['fact_recall']:.3f} vs "
               f"{active['fact_recall']:.3f} for {against} (tolerance {cfg.fact_recall_tolerance})")
    else:
        return Verdict(True, f"{metric} {new:.4f} beats {against} ({old:.4f}) by at least {margin} "
                       f"(interval {low:.3f}..{interval[1]:.3f}); facts wrong {_pct(candidate.get('fact_error_rate'))} "
                       f"vs {_pct(active.get('fact_error_rate'))}, recall {_pct(candidate.get('fact_recall'))} vs "
                       f"{_pct(active.get('fact_recall'))}", checks)
    return Verdict(False, f"{why}; not promoted", checks)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"
