"""Training a round's adapter in several data-parallel processes, launched with `accelerate`.

`catalogcap train --processes N` (or `training.processes`) keeps the round as it is (the
plan, the store row, the held-out evaluation, the gate and the promotion stay in the `train`
process, the only one that touches the database) and hands the training itself to
`accelerate launch`, which starts N ranks of `python -m catalogcap.training.distributed SPEC`
(torch.distributed: NCCL across GPUs, gloo on CPU). Every rank loads the base model and
trains on its share of every micro-batch (see ranks.py and trainer.py); their LoRA gradients
are summed before each optimizer step, so the N processes take the steps one process would
take on the same global micro-batch (`training.batch_size`), with the same step budget,
learning-rate search and dev split. Rank 0 alone scores the dev split, writes checkpoints and
the adapter, and reports progress on stdout.

The spec (run folder/processes.json) holds what the ranks need and nothing secret: the
settings without the database URL, the training examples and their product fields. Every
rank watches the `train` process and exits if it is gone, so a killed round leaves no
orphan trainers; the run folder keeps its checkpoint, and `train --resume` continues it (with
any number of processes: the global batch does not depend on it).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from catalogcap.errors import CatalogcapError, TrainingInterrupted
from catalogcap.settings import Settings
from catalogcap.training.dataset import Example
from catalogcap.training.prompting import ExamplePrompts

log = logging.getLogger("catalogcap.training")

PROGRESS = "catalogcap-progress "  # rank 0's progress lines on stdout: this prefix, then JSON
SPEC = "processes.json"
RESULT = "trained.json"
LOG = "processes.log"


def _on_gpus(settings: Settings) -> bool:
    """Whether the round trains on CUDA GPUs (else on the CPU)."""
    import torch

    return torch.cuda.is_available() and settings.device in ("auto", "cuda")


def resolve_processes(settings: Settings) -> int:
    """How many training processes `training.processes` asks for on this machine (0: one per GPU)."""
    wanted = settings.training.processes
    if wanted == 1:
        return 1
    import torch

    gpus = torch.cuda.device_count() if _on_gpus(settings) else 0
    if wanted == 0:
        return max(1, gpus)
    if gpus and wanted > gpus:
        raise CatalogcapError(f"training.processes is {wanted} but this machine has {gpus} GPU(s): "
                              f"use at most {gpus} (or 0 for one per GPU)")
    return wanted


def launch_command(spec: Path, processes: int, *, cpu: bool) -> list[str]:
    """`accelerate launch` of `processes` ranks of this module on this machine."""
    threads = max(1, (os.cpu_count() or 1) // processes) if cpu else 1
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", "0", "--num_cpu_threads_per_process", str(threads),
            "-m", "catalogcap.training.distributed", str(spec)]


def train_in_processes(settings: Settings, run_dir: Path, examples: list[Example],
                       prompts: dict[str, str] | ExamplePrompts, *, processes: int, resume: bool,
                       deadline: float | None, on_step: Callable[[int, int, float], None] | None = None) -> Any:
    """Run the trainer in `processes` ranks; the `TrainResult` rank 0 wrote."""
    from catalogcap.training.trainer import TrainResult

    cpu = not _on_gpus(settings)
    spec = run_dir / SPEC
    spec.write_text(json.dumps({
        "run_dir": str(run_dir),
        # the ranks never open the store: no database URL (it may carry a password) in the run folder
        "settings": settings.model_dump(mode="json", exclude={"database_url"}),
        "examples": [asdict(e) for e in examples],
        "fields": ({str(k): v for k, v in prompts.fields.items()} if isinstance(prompts, ExamplePrompts) else None),
        "kind_prompts": prompts if isinstance(prompts, dict) else None,
        "resume": resume,
        "seconds_left": None if deadline is None else max(0.0, deadline - time.monotonic()),
        "parent": os.getpid(),
        "cpu": cpu,
    }), encoding="utf-8")
    result = run_dir / RESULT
    result.unlink(missing_ok=True)
    log_path = run_dir / LOG
    command = launch_command(spec, processes, cpu=cpu)
    log.info("training in %d processes (%s): %s", processes, "gloo on CPU" if cpu else "NCCL on GPUs",
             " ".join(command))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    tail: deque[str] = deque(maxlen=12)
    with log_path.open("a", encoding="utf-8") as out:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                                 encoding="utf-8", errors="replace", bufsize=1)
        try:
            assert child.stdout is not None
            for line in child.stdout:
                if line.startswith(PROGRESS):
                    if on_step is not None:
                        step = json.loads(line[len(PROGRESS):])
                        on_step(step["step"], step["total"], step["loss"])
                    continue
                out.write(line)
                out.flush()
                if line.strip():
                    tail.append(line.rstrip())
            code = child.wait()
        finally:
            if child.poll() is None:  # interrupted here: the launcher takes its ranks down with it
                child.terminate()
                try:
                    child.wait(30)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
    if code != 0 or not result.is_file():
        last = "\n".join(f"  {line}" for line in tail)
        raise TrainingInterrupted(
            f"training in {processes} processes stopped (exit {code}); `catalogcap train --resume` continues "
            f"from the last checkpoint. The processes' output is in {log_path}; its last lines:\n{last}")
    return TrainResult.from_json(json.loads(result.read_text(encoding="utf-8")))


def _follow_parent(pid: int) -> None:
    """Exit when the `train` process that launched us is gone (killed): no orphan trainers."""
    from catalogcap.store.queue import pid_alive

    def watch() -> None:
        while True:
            time.sleep(2.0)
            if not pid_alive(pid):
                os._exit(3)

    threading.Thread(target=watch, name="catalogcap-parent", daemon=True).start()


def _progress(step: int, total: int, loss: float) -> None:
    print(PROGRESS + json.dumps({"step": step, "total": total, "loss": loss}), flush=True)


def main(argv: list[str] | None = None) -> int:
    """One rank (run by `accelerate launch`): train on its share, rank 0 writes the result."""
    from datetime import timedelta

    import torch
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    from catalogcap.training.ranks import AccelerateRanks
    from catalogcap.training.round import _Bases
    from catalogcap.training.trainer import train

    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    _follow_parent(int(spec["parent"]))
    settings = Settings.model_validate(spec["settings"])
    logging.basicConfig(level=settings.log_level, format="rank %(process)d %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    # collectives wait while rank 0 alone scores the dev split or writes checkpoints: be patient
    patience = timedelta(minutes=max(30.0, settings.training.max_minutes))
    accelerator = Accelerator(cpu=spec["cpu"], kwargs_handlers=[InitProcessGroupKwargs(timeout=patience)])
    ranks = AccelerateRanks(accelerator)
    run_dir = Path(spec["run_dir"])
    examples = [Example(**e) for e in spec["examples"]]
    prompts: dict[str, str] | ExamplePrompts
    if spec["fields"] is not None:
        prompts = ExamplePrompts(settings, {int(k): v for k, v in spec["fields"].items()})
    else:
        prompts = spec["kind_prompts"]
    bases = _Bases(settings.model_copy(update={"device": "cpu" if spec["cpu"] else "cuda"}))
    deadline = None if spec["seconds_left"] is None else time.monotonic() + spec["seconds_left"]
    trained = train(bases, bases.processor, examples, settings, run_dir, resume=spec["resume"], prompts=prompts,
                    deadline=deadline, on_step=_progress if ranks.main else None, ranks=ranks)
    if ranks.main:
        tmp = run_dir / (RESULT + ".tmp")
        tmp.write_text(json.dumps(trained.to_json()), encoding="utf-8")
        tmp.replace(run_dir / RESULT)
    accelerator.wait_for_everyone()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
