"""Data-parallel training: the same steps in 1 and in N processes (`train --processes N`).

Trains the demo's tiny BLIP on N reviewed demo products with a fixed budget (no dropout,
one learning rate, one dev score at the end), once in this process and once in each
requested number of accelerate ranks (gloo on CPU, NCCL on GPUs), and prints for each: wall
time (model loading and process start-up included), training samples/s, final loss, and the
largest difference of the adapter's weights from the one-process adapter, relative to each
tensor's range. The difference is the number that matters (the ranks must take the steps
one process takes); the speed depends on the cores or GPUs there are: on a 2-core machine
two ranks of one thread each do what one process of two threads does.

    python benchmarks/train_processes.py [--images 96] [--steps 30] [--processes 2 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--processes", type=int, nargs="+", default=[2])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from safetensors.torch import load_file

    from catalogcap.demo import DEMO_MODEL, catalog
    from catalogcap.settings import load_settings
    from catalogcap.training.dataset import Example
    from catalogcap.training.distributed import train_in_processes
    from catalogcap.training.round import _Bases
    from catalogcap.training.trainer import train

    with tempfile.TemporaryDirectory(prefix="catalogcap-train-processes-") as tmp:
        root = Path(tmp)
        truth = catalog.write_catalog(root / "catalog", catalog.products(args.images, seed=5))
        examples = [Example(2 * i + k, 1, i, f"{i:064x}", kind, item.house(kind), str(root / "catalog" / name))
                    for i, (name, item) in enumerate(sorted(truth.items()))
                    for k, kind in enumerate(("alt_text", "description"))]
        os.environ["CATALOGCAP_HOME"] = str(root / "home")
        settings = load_settings({"model": str(DEMO_MODEL), "training": {
            "lr": 1e-3, "max_steps": args.steps, "dropout": 0.0, "evals_per_run": 1}})
        prompts = {kind: settings.generation.for_kind(kind).prompt for kind in ("alt_text", "description")}
        rows = []
        reference = None
        for processes in [1, *args.processes]:
            run_dir = root / f"run-{processes}"
            run_dir.mkdir()
            started = time.perf_counter()
            if processes == 1:
                bases = _Bases(settings)
                result = train(bases, bases.processor, examples, settings, run_dir, prompts=prompts)
                del bases
            else:
                result = train_in_processes(settings, run_dir, examples, prompts, processes=processes,
                                            resume=False, deadline=None)
            seconds = time.perf_counter() - started
            adapter = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
            reference = reference or adapter
            worst = max(float((adapter[k] - reference[k]).abs().max()) / max(float(reference[k].abs().max()), 1e-12)
                        for k in reference)
            rows.append({"processes": processes, "seconds": round(seconds, 1),
                         "samples_s": round(result.samples_per_second, 1), "final_loss": round(result.final_loss, 6),
                         "steps": result.steps, "max_relative_weight_difference": worst})
    if args.json:
        print(json.dumps({"images": args.images, "steps": args.steps, "runs": rows}))
        return
    print(f"{args.images} images, {args.steps} steps of {settings.training.batch_size} examples")
    print(f"{'processes':>9} {'seconds':>8} {'samples/s':>10} {'final loss':>11} {'max rel. diff':>14}")
    for row in rows:
        print(f"{row['processes']:>9} {row['seconds']:>8} {row['samples_s']:>10} {row['final_loss']:>11} "
              f"{row['max_relative_weight_difference']:>14.2e}")


if __name__ == "__main__":
    main()
