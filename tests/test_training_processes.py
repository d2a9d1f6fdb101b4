"""`catalogcap train --processes N`: the round's training in N data-parallel ranks launched
with accelerate (gloo on this CPU machine, real processes and a real process group).

- The ranks take the optimizer steps one process takes on the same data (their gradients
  are summed over each global micro-batch): the adapters agree to float rounding, with the
  embedding cache and with pixels streamed, with uneven shares and gradient accumulation,
  on two catalogs.
- Through the CLI: a round in 2 processes reports `processes`, is gated and recorded like any
  other, and scores within noise of the one-process round on the same reviews.
- A rank killed with SIGKILL: one line, exit 1, the run stays resumable, and `--resume`
  (here with one process: the global batch does not depend on it) finishes it. The `train`
  process killed: its ranks exit on their own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from sqlmodel import select

from catalogcap.demo import DEMO_MODEL, catalog
from catalogcap.demo.reviewer import review_toward_house
from catalogcap.intake import scan
from catalogcap.settings import load_settings
from catalogcap.store.database import create_store_engine, read_session, write_session
from catalogcap.store.models import Adapter, Meta, TrainingRun
from catalogcap.training.dataset import SALT_KEY, Example
from catalogcap.training.distributed import train_in_processes
from catalogcap.training.round import _Bases
from catalogcap.training.trainer import train
from catalogcap.worker import Worker
from tests.factories import poll

pytestmark = pytest.mark.timeout(900)
ROOT = Path(__file__).resolve().parents[1]


def _examples(root: Path, seed: int, n: int) -> list[Example]:
    truth = catalog.write_catalog(root / "catalog", catalog.products(n, seed=seed))
    examples = []
    for i, (name, item) in enumerate(sorted(truth.items())):
        for k, kind in enumerate(("alt_text", "description")):
            examples.append(Example(2 * i + k, 1, i, f"{seed:08x}{i:056x}", kind, item.house(kind),
                                    str(root / "catalog" / name)))
    return examples


def _adapter(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))


@pytest.mark.parametrize("seed,processes,extra", [
    (3, 2, {}),  # embedding cache, even shares
    (7, 3, {"embed_cache_gb": 0, "batch_size": 7, "grad_accum": 2}),  # pixels streamed, uneven shares
], ids=["cached-2", "streamed-uneven-3"])
def test_ranks_take_the_steps_one_process_takes(tmp_path, monkeypatch, seed, processes, extra) -> None:
    monkeypatch.setenv("CATALOGCAP_HOME", str(tmp_path / "home"))
    examples = _examples(tmp_path, seed, 40)
    # no dropout: with it each rank draws its own masks, and equal would mean "equal in distribution"
    training = {"lr": 1e-3, "max_steps": 5, "dropout": 0.0, "evals_per_run": 1, "batch_size": 8, **extra}
    settings = load_settings({"model": str(DEMO_MODEL), "training": training})
    prompts = {kind: settings.generation.for_kind(kind).prompt for kind in ("alt_text", "description")}

    bases = _Bases(settings)
    (tmp_path / "one").mkdir()
    one = train(bases, bases.processor, examples, settings, tmp_path / "one", prompts=prompts)
    (tmp_path / "many").mkdir()
    many = train_in_processes(settings, tmp_path / "many", examples, prompts, processes=processes, resume=False,
                              deadline=None)

    assert (one.processes, many.processes) == (1, processes)
    assert many.steps == one.steps == 5
    assert many.samples_per_second > 0 and many.embed_cache == one.embed_cache
    assert abs(many.final_loss - one.final_loss) <= 1e-4 * abs(one.final_loss)
    # the dev split was scored once, by rank 0, on the same checkpoint
    assert many.search[0]["best_score"] == pytest.approx(one.search[0]["best_score"], abs=1e-6)
    a, b = _adapter(tmp_path / "one"), _adapter(tmp_path / "many")
    assert set(a) == set(b)
    moved = [k for k in a if "lora_B" in k and a[k].abs().max() > 1e-4]
    assert moved, "the adapter did not train: nothing to compare"
    for key in a:
        scale = float(a[key].abs().max())
        assert float((a[key] - b[key]).abs().max()) <= 1e-3 * scale + 1e-7, key
    # rank 0's spec holds no database URL; the ranks' checkpoint kept one random state per rank
    spec = json.loads((tmp_path / "many" / "processes.json").read_text())
    assert "database_url" not in spec["settings"]
    assert sorted(p.name for p in (tmp_path / "many" / "checkpoint").glob("rng-*")) == [
        f"rng-{r}.safetensors" for r in range(processes)]


# ---------------------------------------------------------------------------- through the CLI

ENV = {"CATALOGCAP_MODEL": str(DEMO_MODEL), "CATALOGCAP_BATCH_SIZE": "32",
       "CATALOGCAP_TRAINING__MIN_NEW_CORRECTIONS": "0"}


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    """160 demo products captioned by the base model, all reviewed toward the house style."""
    root = tmp_path_factory.mktemp("processes")
    truth = catalog.write_catalog(root / "catalog", catalog.products(160, seed=21))
    home = root / "home"
    home.mkdir()
    mp = pytest.MonkeyPatch()
    try:
        for key, value in ENV.items():
            mp.setenv(key, value)
        settings = load_settings({"home": str(home)})
        engine = create_store_engine(settings.db_url)
        with write_session(engine) as session:
            session.add(Meta(key=SALT_KEY, value="processes-21"))
        scan(engine, [root / "catalog"], settings)
        worker = Worker(engine, settings)
        assert worker.drain().captioned == len(truth)
        worker.close()
        review_toward_house(engine, truth)
        engine.dispose()
    finally:
        mp.undo()
    return home


def _home(reviewed: Path, dest: Path, monkeypatch) -> Path:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    shutil.copytree(reviewed, dest)
    return dest


def _cli(home: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "CATALOGCAP_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "catalogcap", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


# a short fixed run (the default search would take minutes per round on two cores)
SHORT = ("--lr", "0.003", "--max-steps", "120")


def _readme_train_line() -> list[str]:
    """The `catalogcap train` line of README's "Training on every GPU of one box" recipe."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("test_a_round_in_two_processes_is_gated_and_scores_like_one", 1)[1].split("```sh\n", 1)[1]
    [line] = [ln for ln in block.split("```", 1)[0].splitlines() if ln.startswith("catalogcap ")]
    return line.split("#", 1)[0].split()[1:]


def test_a_round_in_two_processes_is_gated_and_scores_like_one(reviewed, tmp_path, monkeypatch) -> None:
    recipe = _readme_train_line()
    assert recipe == ["train", "--processes", "2", "--json"]
    rounds = {}
    for processes in (1, 2):
        home = _home(reviewed, tmp_path / f"home-{processes}", monkeypatch)
        args = recipe if processes == 2 else ["train", "--processes", "1", "--json"]
        done = _cli(home, *args, "--force", *SHORT)
        out, err = done.communicate(timeout=600)
        assert done.returncode == 0, err
        rounds[processes] = json.loads(out)
        assert rounds[processes]["processes"] == processes
        assert rounds[processes]["policy"]["processes"] == processes
    one, two = rounds[1], rounds[2]
    assert two["trained"] and two["adapter"] and two["val_size"] == one["val_size"]
    assert two["policy"]["budget"] == one["policy"]["budget"]  # the same steps, whatever the processes
    # both learnt the house style: far above the base model, and within noise of each other
    low, high = one["gate_interval"]
    for result in (one, two):
        assert result["candidate"]["CIDEr"] - result["active"]["CIDEr"] >= 1.0, result["reason"]
    assert abs(two["candidate"]["CIDEr"] - one["candidate"]["CIDEr"]) <= max(0.25, (high - low) / 2), (one, two)
    assert two["promoted"] == one["promoted"], (one["reason"], two["reason"])
    engine = create_store_engine(load_settings({"home": str(tmp_path / "home-2")}).db_url)
    try:
        with read_session(engine) as session:
            run = session.exec(select(TrainingRun)).one()
            adapter = session.get(Adapter, two["adapter"])
        assert run.state == "finished" and run.metrics["policy"]["processes"] == 2
        assert adapter is not None and (Path(adapter.path) / "adapter_model.safetensors").is_file()
    finally:
        engine.dispose()
    # the run folder keeps nothing of the ranks' hand-over
    run_dir = tmp_path / "home-2" / "runs" / run.id
    assert not (run_dir / "processes.json").exists() and not (run_dir / "trained.json").exists()


def _rank_pids(run_dir: Path) -> list[int]:
    """Processes running catalogcap.training.distributed for this run."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (b"catalogcap.training.distributed" in cmdline and str(run_dir / "processes.json").encode() in cmdline
                and b"accelerate.commands.launch" not in cmdline):  # the ranks, not their launcher
            found.append(int(proc.name))
    return found


def _start_long_round(home: Path, monkeypatch) -> tuple[subprocess.Popen, Path]:
    monkeypatch.setenv("CATALOGCAP_TRAINING__EVALS_PER_RUN", "10")
    monkeypatch.setenv("CATALOGCAP_TRAINING__PATIENCE", "100")
    # a run that checkpoints every 3 steps, so that the kill lands mid-training
    proc = _cli(home, "train", "--force", "--json", "--processes", "2", "--lr", "0.001", "--max-steps", "30")
    runs = home / "runs"

    def checkpointed() -> bool:
        assert proc.poll() is None, proc.communicate()
        return any((d / "checkpoint" / "trainer_state.json").exists() for d in runs.glob("run-*"))

    poll(checkpointed, 300, "a checkpoint of the 2-process round")
    return proc, next(runs.glob("run-*"))


def test_a_killed_rank_leaves_a_round_that_resumes(reviewed, tmp_path, monkeypatch) -> None:
    home = _home(reviewed, tmp_path / "home", monkeypatch)
    proc, run_dir = _start_long_round(home, monkeypatch)
    ranks = _rank_pids(run_dir)
    assert len(ranks) == 2, ranks
    os.kill(max(ranks), signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "training in 2 processes stopped" in err and "catalogcap train --resume" in err, err
    assert "Traceback" not in err.split("last lines:")[0]
    poll(lambda: not _rank_pids(run_dir), 60, "the surviving rank to exit")
    checkpoint = json.loads((run_dir / "checkpoint" / "trainer_state.json").read_text())
    assert 3 <= checkpoint["step"] < 30
    engine = create_store_engine(load_settings({"home": str(home)}).db_url)
    try:
        with read_session(engine) as session:
            assert session.exec(select(TrainingRun)).one().state == "interrupted"
            assert session.exec(select(Adapter)).all() == []
        done = _cli(home, "train", "--resume", "--json", "--processes", "1", "--max-steps", "2")
        out, err = done.communicate(timeout=600)
        assert done.returncode == 0, err
        result = json.loads(out)
        assert result["adapter"] and result["processes"] == 1
        with read_session(engine) as session:
            run = session.exec(select(TrainingRun)).one()
        assert run.state == "finished" and run.config["max_steps"] == 30  # as it was started
        search = run.metrics["policy"]["search"]
        assert search[0]["step"] == 30 and search[0]["history"][0] == checkpoint["history"][0]
    finally:
        engine.dispose()


def test_killing_train_takes_its_ranks_with_it(reviewed, tmp_path, monkeypatch) -> None:
    home = _home(reviewed, tmp_path / "home", monkeypatch)
    proc, run_dir = _start_long_round(home, monkeypatch)
    assert len(_rank_pids(run_dir)) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    poll(lambda: not _rank_pids(run_dir), 60, "the ranks of a killed `train` to exit")


def test_how_many_processes_a_machine_gets(monkeypatch, tmp_path) -> None:
    """`training.processes`: 0 is one per GPU (one without); more than the GPUs there are is refused
    before anything is recorded. (No GPU here: torch's count of them is faked.)"""
    from catalogcap.errors import CatalogcapError
    from catalogcap.training.distributed import launch_command, resolve_processes

    monkeypatch.setenv("CATALOGCAP_HOME", str(tmp_path))

    def settings(processes: int, device: str = "auto"):
        return load_settings({"device": device, "training": {"processes": processes}})

    assert resolve_processes(settings(0)) == 1 and resolve_processes(settings(3)) == 3  # CPU: gloo ranks
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert resolve_processes(settings(0)) == 4 and resolve_processes(settings(2)) == 2
    with pytest.raises(CatalogcapError, match=r"training\.processes is 8 but this machine has 4 GPU"):
        resolve_processes(settings(8))
    assert resolve_processes(settings(8, device="cpu")) == 8  # told to train on CPU: no GPU limit
    command = launch_command(tmp_path / "processes.json", 2, cpu=True)
    assert command[1:3] == ["-m", "accelerate.commands.launch"] and "--num_processes" in command
    assert command[command.index("--num_cpu_threads_per_process") + 1] == str(max(1, (os.cpu_count() or 1) // 2))
