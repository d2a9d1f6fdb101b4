"""Training rounds on CPU with the demo's tiny BLIP (pretrained on the generic style) and
reviews in the house style: lift, gating, resume after kill -9, rollback, metrics."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlmodel import select

from catalogcap.demo import DEMO_MODEL, catalog
from catalogcap.demo.reviewer import review_toward_house
from catalogcap.errors import CatalogcapError
from catalogcap.intake import scan
from catalogcap.settings import load_settings
from catalogcap.store.captions import decide
from catalogcap.store.database import create_store_engine, read_session, write_session
from catalogcap.store.models import Adapter, TrainingRun
from catalogcap.training import registry
from catalogcap.training.dataset import collect, in_validation
from catalogcap.training.evaluate import score
from catalogcap.training.round import run_round
from catalogcap.worker import Worker

TRAINING_ENV = {
    "CATALOGCAP_MODEL": str(DEMO_MODEL),
    "CATALOGCAP_BATCH_SIZE": "32",
    "CATALOGCAP_TRAINING__EPOCHS": "12",
    "CATALOGCAP_TRAINING__LR": "0.003",
    "CATALOGCAP_TRAINING__VAL_PERCENT": "25",
    "CATALOGCAP_TRAINING__MIN_NEW_CORRECTIONS": "0",
}


@pytest.fixture(scope="module")
def captioned(tmp_path_factory: pytest.TempPathFactory):
    """A catalog captioned by the base model (built once; each test gets a copy of the home)."""
    root = tmp_path_factory.mktemp("training")
    items = catalog.products(96, seed=11)
    truth = catalog.write_catalog(root / "catalog", items)
    home = root / "home"
    home.mkdir()
    old = {k: os.environ.get(k) for k in TRAINING_ENV}
    os.environ.update(TRAINING_ENV)
    try:
        settings = load_settings({"home": str(home)})
        engine = create_store_engine(settings.db_url)
        scan(engine, [root / "catalog"], settings)
        worker = Worker(engine, settings)
        assert worker.drain().captioned == len(items)
        worker.close()
        engine.dispose()
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    return home, truth


def _copy_home(src: Path, dest: Path, monkeypatch) -> tuple:
    for key, value in TRAINING_ENV.items():
        monkeypatch.setenv(key, value)
    shutil.copytree(src, dest)
    monkeypatch.setenv("CATALOGCAP_HOME", str(dest))
    settings = load_settings()
    return settings, create_store_engine(settings.db_url)


@pytest.fixture
def store(captioned, tmp_path, monkeypatch):
    home, truth = captioned
    settings, engine = _copy_home(home, tmp_path / "home", monkeypatch)
    yield settings, engine, truth
    engine.dispose()


@pytest.fixture(scope="module")
def promoted(captioned, tmp_path_factory):
    """The captioned catalog, reviewed toward the house style, after one promoted round."""
    home, truth = captioned
    mp = pytest.MonkeyPatch()
    try:
        settings, engine = _copy_home(home, tmp_path_factory.mktemp("promoted") / "home", mp)
        review_toward_house(engine, truth, share=1.0)
        result = run_round(engine, settings, force=True)
        engine.dispose()
    finally:
        mp.undo()
    return settings.home, truth, result


@pytest.fixture
def after_round(promoted, tmp_path, monkeypatch):
    home, truth, result = promoted
    settings, engine = _copy_home(home, tmp_path / "home", monkeypatch)
    # adapters live in the copied home now
    with write_session(engine) as session:
        for adapter in session.exec(select(Adapter)).all():
            adapter.path = str(settings.home / "adapters" / adapter.id)
            session.add(adapter)
    yield settings, engine, truth, result
    engine.dispose()


def test_round_lifts_cider_and_captions_follow_the_house_style(after_round) -> None:
    settings, engine, _truth, result = after_round
    assert result.promoted, result.reason
    lift = result.candidate["CIDEr"] - result.active["CIDEr"]
    assert lift > 0.5, (result.active["CIDEr"], result.candidate["CIDEr"])
    assert registry.active(engine).id == result.adapter
    # captions made with it follow the house style
    from catalogcap.captioner import Captioner

    adapter = registry.active(engine)
    captioner = Captioner.from_settings(settings, adapter_id=adapter.id, adapter_dir=Path(adapter.path))
    fresh = catalog.products(12, seed=999, start=5000)
    pictures = [catalog.draw(item).convert("RGB") for item in fresh]
    texts = [r.alt_text.lower() for r in captioner.caption_images(pictures)]
    assert sum("background" not in t for t in texts) >= 10, texts
    assert sum(any(m in t for m in set(catalog.MATERIAL.values())) for t in texts) >= 8, texts
    print(f"\nCIDEr {result.active['CIDEr']:.3f} -> {result.candidate['CIDEr']:.3f}; sample: {texts[:3]}")


def test_a_bad_night_is_not_promoted_and_changes_nothing(after_round) -> None:
    """Training texts shuffled between images (held-out reviews stay right): the candidate
    loses to the active adapter, which stays active."""
    settings, engine, _truth, result = after_round
    data = collect(engine, settings)
    rng = random.Random(5)
    for kind in ("alt_text", "description"):
        rows = [e for e in data.train if e.kind == kind]
        texts = [e.text for e in rows]
        rng.shuffle(texts)
        with write_session(engine) as session:
            for example, text in zip(rows, texts):
                if text != example.text:
                    decide(session, example.caption_id, "edit", reviewer="saboteur", text=text)
    bad = run_round(engine, settings, force=True)
    assert not bad.promoted, bad.reason
    assert "does not beat" in bad.reason
    assert registry.active(engine).id == result.adapter
    assert registry.get(engine, bad.adapter).state == "rejected"


def test_minimum_and_dry_run(store) -> None:
    settings, engine, truth = store
    settings.training.min_new_corrections = 10
    result = run_round(engine, settings)
    assert not result.promoted and "only 0 new reviewed" in result.reason
    review_toward_house(engine, truth, share=0.5)
    dry = run_round(engine, settings, dry_run=True)
    assert dry.reason.startswith("dry run") and dry.train_size > 0 and dry.val_size > 0


def test_validation_split_is_stable_and_grows_as_a_superset(store) -> None:
    settings, engine, truth = store
    review_toward_house(engine, truth, share=0.5, seed=1)
    first = {e.fingerprint for e in collect(engine, settings).val}
    review_toward_house(engine, truth, share=1.0, seed=2)
    second = {e.fingerprint for e in collect(engine, settings).val}
    assert first and first <= second and len(second) > len(first)
    data = collect(engine, settings)
    assert not {e.fingerprint for e in data.train} & second
    assert in_validation("abc", "salt", 100.0) and not in_validation("abc", "salt", 0.0001)


def _cli(home: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "CATALOGCAP_HOME": str(home), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-m", "catalogcap", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_killed_round_changes_nothing_and_resumes(store, monkeypatch) -> None:
    settings, engine, truth = store
    review_toward_house(engine, truth, share=1.0)
    monkeypatch.setenv("CATALOGCAP_TRAINING__EPOCHS", "40")
    proc = _cli(settings.home, "train", "--force", "--json")
    deadline = time.monotonic() + 180
    runs = settings.home / "runs"
    while time.monotonic() < deadline:
        if any((d / "checkpoint" / "trainer_state.json").exists() for d in runs.glob("run-*")):
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    with read_session(engine) as session:
        assert session.exec(select(Adapter)).all() == []  # the registry is untouched
        run = session.exec(select(TrainingRun)).one()
        assert run.state == "running"
    state = json.loads(next(runs.glob("run-*/checkpoint/trainer_state.json")).read_text())
    assert 1 <= state["epoch"] < 40
    # today's settings differ: the resume must still finish the run as it was started
    monkeypatch.setenv("CATALOGCAP_TRAINING__EPOCHS", "2")
    monkeypatch.setenv("CATALOGCAP_TRAINING__RANK", "4")
    done = _cli(settings.home, "train", "--resume", "--json")
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    assert "ignoring today's training.epochs, training.rank" in err
    result = json.loads(out)
    assert result["run_id"] == run.id and result["adapter"]
    assert set(result) >= {"promoted", "adapter", "candidate", "active", "train_size", "val_size", "reason"}
    with read_session(engine) as session:
        finished = session.get(TrainingRun, run.id)
    assert finished.state == "finished"
    cfg = finished.config
    assert cfg["epochs"] == 40 and cfg["rank"] == 16
    per_epoch = math.ceil(finished.train_size / cfg["batch_size"] / cfg["grad_accum"])
    total = min(cfg["max_steps"], per_epoch * 40) if cfg["max_steps"] else per_epoch * 40
    assert finished.metrics["train"]["steps"] == total and math.isfinite(finished.metrics["train"]["final_loss"])


def test_rollback_and_worker_switches_live(after_round) -> None:
    settings, engine, _truth, first = after_round
    assert first.promoted
    adapter = registry.get(engine, first.adapter)
    second = registry.register_candidate(engine, settings.home, Path(adapter.path), adapter_id="manual-2",
                                         base_model=settings.model, parent_id=adapter.id, metrics={}, config={})
    registry.promote(engine, second.id, reason="test", manual=True)
    worker = Worker(engine, settings)
    assert worker.captioner().adapter_id == "manual-2"
    assert registry.rollback(engine) == (registry.get(engine, "manual-2"), registry.get(engine, first.adapter))
    assert worker.captioner().adapter_id == first.adapter  # picked up between batches, no restart
    assert registry.rollback(engine).active is None
    assert worker.captioner().adapter_id is None
    registry.promote(engine, first.adapter, reason="again", manual=True)
    with pytest.raises(CatalogcapError, match="is active"):
        registry.delete(engine, first.adapter)
    registry.delete(engine, "manual-2")
    assert not Path(second.path).exists() and registry.get(engine, "manual-2").state == "deleted"
    # an adapter trained for another base model is never applied to this one
    foreign = registry.register_candidate(engine, settings.home, Path(adapter.path), adapter_id="foreign",
                                          base_model="Other/model", parent_id=None, metrics={}, config={})
    registry.promote(engine, foreign.id, reason="test", manual=True)
    assert worker.captioner().adapter_id is None
    worker.close()


def test_metrics_match_pycocoevalcap_run_directly() -> None:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    refs = {"1": ["Red cotton shirt with stripes"], "2": ["Blue ceramic mug"], "3": ["Green leather shoe"]}
    hyps = {"1": "Red striped cotton shirt", "2": "Blue ceramic mug", "3": "A green shoe"}
    ours = score(refs, hyps)
    tok = PTBTokenizer()
    r = tok.tokenize({k: [{"caption": c} for c in v] for k, v in refs.items()})
    h = tok.tokenize({k: [{"caption": v}] for k, v in hyps.items()})
    assert ours["BLEU-1"] == pytest.approx(Bleu(4).compute_score(r, h, verbose=0)[0][0])
    assert ours["ROUGE-L"] == pytest.approx(Rouge().compute_score(r, h)[0])
    assert ours["CIDEr"] == pytest.approx(Cider().compute_score(r, h)[0])
    assert 0 < ours["METEOR"] <= 1
    perfect = score({"1": ["a red shirt"]}, {"1": "a red shirt"})
    assert perfect["BLEU-1"] == pytest.approx(1.0)


def test_the_daemons_scheduled_round_trains_in_a_child_with_the_daemons_settings(store, monkeypatch) -> None:
    import threading

    from catalogcap.watch.schedule import TrainingScheduler

    settings, engine, truth = store
    review_toward_house(engine, truth, share=1.0)
    # the environment says otherwise; the daemon's command line must win in the child too
    monkeypatch.setenv("CATALOGCAP_MODEL", "/nonexistent/model")
    monkeypatch.setenv("CATALOGCAP_TRAINING__MIN_NEW_CORRECTIONS", "100000")
    daemon_settings = load_settings({"model": str(DEMO_MODEL),
                                     "training": {"min_new_corrections": 1, "epochs": 2}})
    scheduler = TrainingScheduler(engine, daemon_settings, threading.Event())
    code = scheduler.due_round()
    logs = "\n".join(p.read_text() for p in (settings.home / "logs").glob("train-*.log"))
    assert code == 0, logs
    with read_session(engine) as session:
        run = session.exec(select(TrainingRun)).one()
    assert run.trigger == "schedule" and run.state == "finished", logs
    assert run.config["model"] == str(DEMO_MODEL) and run.config["epochs"] == 2
    assert json.loads(logs[logs.index("{"):])["run_id"] == run.id

    monkeypatch.setenv("CATALOGCAP_TRAINING__MIN_NEW_CORRECTIONS", "100000")
    assert TrainingScheduler(engine, load_settings(), threading.Event()).due_round() is None  # too few new
