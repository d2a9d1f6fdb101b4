"""Peak memory of a training round at 500 and 5,000 reviewed images: it must not grow with the data.

Each size runs a whole round (`run_round`: collect, encode-and-cache the training images,
train, score dev checkpoints, evaluate candidate and active on the held-out set, gate) in a
fresh child process, on a small BLIP with the real 384 px input (577 vision tokens) and
JPEGs of catalog size, and reports the child's peak RSS and training samples/s. The step
count is fixed (`--steps`) so both sizes do the same optimizer work; what differs is how many
images are read, encoded, cached and evaluated. The ratio 5,000 / 500 is the number to watch
(target <= 1.3); the old trainer kept every image's pixels in memory (1.7 MB each at 384 px).

    python benchmarks/train_memory.py            # 500 and 5,000 images
    python benchmarks/train_memory.py --json --sizes 200 2000 --steps 20
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_store(home: Path, images: int, model: Path) -> None:
    """A store with `images` reviewed product photos (alt text and description accepted)."""
    from catalogcap.demo import catalog
    from catalogcap.settings import load_settings
    from catalogcap.store.database import create_store_engine, write_session
    from catalogcap.store.models import Asset, AssetPath, Caption

    home.mkdir(parents=True, exist_ok=True)
    settings = load_settings({"home": str(home), "model": str(model)})
    engine = create_store_engine(settings.db_url)
    folder = home / "catalog"
    folder.mkdir(parents=True, exist_ok=True)
    items = catalog.products(images, seed=1)
    with write_session(engine) as session:
        for item in items:
            item = type(item)(**{**item.__dict__, "size": (480, 420), "transparent": False, "fmt": "JPEG"})
            data = catalog.encode(item, catalog.draw(item))
            path = folder / catalog.filename_for(item)
            path.write_bytes(data)
            stat = path.stat()
            asset = Asset(fingerprint=hashlib.sha256(data).hexdigest(), size=len(data), state="done")
            session.add(asset)
            session.flush()
            session.add(AssetPath(asset_id=asset.id, path=str(path), size=stat.st_size, mtime_ns=stat.st_mtime_ns))
            for kind in ("alt_text", "description"):
                text = item.house(kind)
                session.add(Caption(asset_id=asset.id, kind=kind, model_text=item.generic(kind), text=text,
                                    state="edited", model=str(model), reviewer="bench"))
    engine.dispose()


def child(images: int, steps: int, workdir: Path) -> dict:
    from catalogcap.demo.tiny import build_tiny_blip
    from catalogcap.settings import load_settings
    from catalogcap.store.database import create_store_engine
    from catalogcap.training.round import run_round

    model = workdir / "model"
    if not model.exists():
        build_tiny_blip(model, seed=0, image_size=384, patch_size=16, hidden=64)
    home = workdir / f"home-{images}"
    build_store(home, images, model)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    settings = load_settings({"home": str(home), "model": str(model), "batch_size": 32,
                              "training": {"max_steps": steps, "lr": 1e-3, "evals_per_run": 2,
                                           "min_new_corrections": 0, "min_val_images": 1}})
    engine = create_store_engine(settings.db_url)
    started = time.perf_counter()
    result = run_round(engine, settings, force=True)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    train = (result.candidate and result.extra.get("policy")) or {}
    return {"images": images, "train_captions": result.train_size, "held_out_captions": result.val_size,
            "peak_rss_mb": round(peak / 1024, 1), "rss_before_round_mb": round(before / 1024, 1),
            "seconds": round(seconds, 1), "embed_cache": train.get("embed_cache"),
            "samples_per_second": train.get("samples_per_second", 0.0),
            "trained": result.trained}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs=2, default=[500, 5000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--steps", type=int, default=40, help="Optimizer steps of each round (same for both).")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.workdir)))
        return
    with tempfile.TemporaryDirectory(prefix="catalogcap-train-memory-") as tmp:
        rows = []
        for size in args.sizes:
            out = subprocess.run([sys.executable, __file__, "--child", str(size), "--steps", str(args.steps),
                                  "--workdir", tmp], capture_output=True, text=True, check=False)
            if out.returncode != 0:
                sys.exit(f"round on {size} images failed:\n{out.stderr[-4000:]}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    small, large = rows
    summary = {"rounds": rows, "peak_rss_ratio": round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
               "target": 1.3}
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    for row in rows:
        print(f"{row['images']:>6} reviewed images: peak RSS {row['peak_rss_mb']:8.1f} MB, "
              f"round {row['seconds']:6.1f} s, training {row['samples_per_second']:7.1f} samples/s "
              f"(embedding cache: {row['embed_cache']})")
    print(f"peak RSS ratio {large['images']} / {small['images']}: {summary['peak_rss_ratio']:.3f} (target <= 1.3)")


if __name__ == "__main__":
    main()
