"""Backfill on Ray vs `catalogcap worker`: the same queue of product photos captioned by the
demo's tiny BLIP, once by `catalogcap worker --until-empty` and once by
`catalogcap backfill --pending --engine ray`, each from a fresh copy of the same store.

    python benchmarks/backfill.py [--images 240] [--actors 2] [--batch-size 16] [--json]

Wall time of each command, as a user runs it (model loading, and Ray's cluster start for the
backfill, included), and img/s. `ray_vs_worker` is Ray's img/s over the worker's (target
>= 0.8: Ray's overhead under 20 %). On one 2-core machine Ray's actors share the cores the
single worker uses, so the ratio measures overhead, not scale-out; on a GPU machine run it
with --actors 1,2,4 to see img/s by number of actors. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def _env(home: Path, batch_size: int) -> dict[str, str]:
    from catalogcap.demo import DEMO_MODEL

    return {**os.environ, "CATALOGCAP_HOME": str(home), "CATALOGCAP_MODEL": str(DEMO_MODEL),
            "CATALOGCAP_BATCH_SIZE": str(batch_size), "CATALOGCAP_PLUGINS": "[]",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "catalogcap", *args], env=env, capture_output=True, text=True,
                          timeout=3600)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"catalogcap {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--actors", default="2", help="Ray actors; a comma list runs each (e.g. 1,2,4)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from catalogcap.demo import catalog

    with tempfile.TemporaryDirectory(prefix="catalogcap-backfill-bench-") as tmp:
        base = Path(tmp) / "queued"
        base.mkdir()
        photos = Path(tmp) / "photos"
        catalog.write_catalog(photos, catalog.products(args.images, seed=7))
        _run(["scan", str(photos), "--queue-only", "--json"], _env(base, args.batch_size))

        def fresh(name: str) -> Path:
            home = Path(tmp) / name
            shutil.copytree(base, home)
            return home

        worker_s, out = _run(["worker", "--until-empty", "--json"], _env(fresh("worker"), args.batch_size))
        assert json.loads(out)["captioned"] == args.images, out
        results = {"images": args.images, "batch_size": args.batch_size, "worker_s": round(worker_s, 1),
                   "worker_img_s": round(args.images / worker_s, 2), "ray": []}
        for actors in (int(a) for a in args.actors.split(",")):
            ray_s, out = _run(["backfill", "--pending", "--engine", "ray", "--workers", str(actors), "--json"],
                              _env(fresh(f"ray-{actors}"), args.batch_size))
            summary = json.loads(out)
            assert summary["captioned"] == args.images, summary
            results["ray"].append({"actors": actors, "seconds": round(ray_s, 1),
                                   "img_s": round(args.images / ray_s, 2),
                                   "img_s_inside": summary["img_s"],  # without the CLI's start and Ray's
                                   "ray_vs_worker": round(worker_s / ray_s, 2)})
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{args.images} images, batch {args.batch_size}: catalogcap worker {results['worker_img_s']} img/s "
          f"({results['worker_s']} s)")
    for r in results["ray"]:
        print(f"  backfill --engine ray, {r['actors']} actor(s): {r['img_s']} img/s ({r['seconds']} s; "
              f"{r['img_s_inside']} img/s once started)  ray/worker x{r['ray_vs_worker']} (target >= 0.8)")


if __name__ == "__main__":
    main()
