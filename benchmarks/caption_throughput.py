"""Captioning throughput: plain transformers against catalogcap's exact and fast paths, in one process.

    python benchmarks/caption_throughput.py [--device cpu|cuda] [--json] [--images 16] [--quick]
                                            [--daemon-batch 8]

BLIP-base architecture (random init: the same compute as the real weights), 384 px,
exactly 20 greedy tokens per caption, 16 product photos of 2000x2000 (JPEG, drawn by
benchmarks/product_photos.py). One after the other, each after one untimed warm-up photo,
in `--rounds` interleaved rounds (default 2; the best rate of each path is reported, since
other processes on a small shared machine slow whichever path they happen to overlap):

  (a) naive: PIL open + a `BlipProcessor` call + `model.generate` per image, fp32, eager
      attention: what every tutorial does;
  (a') transformers batched: PIL open of a whole batch (as many images as (b) puts in one
      model call), one `BlipProcessor` call and one `model.generate` on the batch, fp32, eager
      attention, same token budget: what a user who knows transformers writes in one line;
  (b) exact: catalogcap's fp32 path, `Captioner.caption_files`: files decoded in a thread
      pool a batch ahead of the model (JPEG draft, reduce, torch normalisation), SDPA
      attention, batched generation under inference_mode;
  (c) fast: (b) with dynamic int8 Linear layers on CPU, or in bfloat16 on CUDA;
  (d) daemon path: the captioners of (b) and (c) behind `Worker.drain`, the worker's real
      batch loop (`run_batch`: claim jobs from a SQLite queue, look up paths, decode in the
      worker's pool, caption, commit captions and jobs), `--daemon-batch` images per batch
      (default 8, the `batch_size` default), on the same files registered in a fresh store
      per run (registration untimed: `watch_latency.py` measures intake).

Both caption kinds are set to the same 20-token greedy generation, so catalogcap's
prompt grouping runs one `generate` per batch: one caption per image, as in (a).
Prints img/s and the ratios to (a) and to (a'), then the agreement of (c) with (b) on the demo model:
the share of 200 demo-catalog images whose greedy captions (both kinds) are identical.
Not a test: absolute numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]
TOKENS = 20


def greedy(tokens: int) -> dict[str, Any]:
    """Both kinds: no prompt, greedy, exactly `tokens` tokens, no penalties (so they share one `generate`)."""
    one = {"prompt": "", "num_beams": 1, "max_new_tokens": tokens, "min_new_tokens": tokens,
           "no_repeat_ngram_size": 0, "repetition_penalty": 1.0}
    return {"alt_text": one, "description": one}


def naive(model: Any, processor: Any, paths: list[Path], *, device: str) -> list[str]:
    import torch
    from PIL import Image

    captions = []
    for path in paths:
        image = Image.open(path).convert("RGB")
        inputs = processor(images=image, return_tensors="pt").to(device)
        out = model.generate(**inputs, max_new_tokens=TOKENS, min_new_tokens=TOKENS)
        captions.append(processor.decode(out[0], skip_special_tokens=True))
    if device == "cuda":
        torch.cuda.synchronize()
    return captions


def batched(model: Any, processor: Any, paths: list[Path], *, device: str, batch: int) -> list[str]:
    """(a'): `batch` images per `BlipProcessor` call and per `model.generate`, same token budget as (a)."""
    import torch
    from PIL import Image

    captions: list[str] = []
    for start in range(0, len(paths), batch):
        pictures = []
        for path in paths[start:start + batch]:
            with Image.open(path) as image:
                pictures.append(image.convert("RGB"))
        inputs = processor(images=pictures, return_tensors="pt").to(device)
        out = model.generate(**inputs, max_new_tokens=TOKENS, min_new_tokens=TOKENS)
        captions.extend(processor.batch_decode(out, skip_special_tokens=True))
    if device == "cuda":
        torch.cuda.synchronize()
    return captions


def daemon_path(captioner: Any, settings: Any, runs: Path, paths: list[Path]) -> list[str]:
    """(d): `paths` registered in a fresh store (untimed), then `Worker.drain` timed; the alt texts."""
    import torch
    from sqlmodel import col, select

    from catalogcap.intake import register_file
    from catalogcap.store.database import create_store_engine, read_session
    from catalogcap.store.models import Caption
    from catalogcap.worker import Worker

    home = Path(tempfile.mkdtemp(prefix="run-", dir=runs))
    run_settings = settings.model_copy(update={"home": home})
    engine = create_store_engine(run_settings.db_url)
    for path in paths:
        outcome = register_file(engine, path, run_settings).outcome
        assert outcome == "new", f"{path}: {outcome}"
    worker = Worker(engine, run_settings, captioner_factory=lambda _settings, _adapter: captioner)
    try:
        start = time.perf_counter()
        total = worker.drain()
        if captioner.loaded.device.type == "cuda":
            torch.cuda.synchronize()
        _TIMED["seconds"] = time.perf_counter() - start
    finally:
        worker.close()
    assert total.captioned == len(paths), f"daemon path captioned {total.captioned} of {len(paths)}: {total}"
    with read_session(engine) as session:
        captions = list(session.exec(select(Caption.text).where(Caption.kind == "alt_text")
                                     .order_by(col(Caption.asset_id))).all())
    engine.dispose()
    shutil.rmtree(home, ignore_errors=True)
    return captions


_TIMED: dict[str, float] = {}  # set by a path that times only part of its run (the daemon path's drain)


def catalogcap_path(captioner: Any, paths: list[Path]) -> list[str]:
    import torch

    captions = [result.raw["alt_text"] for _, result in captioner.caption_files(paths)]
    if captioner.loaded.device.type == "cuda":
        torch.cuda.synchronize()
    return captions


def rate(label: str, run: Any, paths: list[Path]) -> float:
    """Images per second of one `run(paths)`."""
    _TIMED.clear()
    start = time.perf_counter()
    captions = run(paths)
    seconds = _TIMED.get("seconds", time.perf_counter() - start)
    assert len(captions) == len(paths), f"{label} returned {len(captions)} captions for {len(paths)} images"
    return len(paths) / seconds


def agreement(device: str, count: int, home: Path) -> float:
    """Share of `count` demo-catalog images whose greedy captions from (c)'s settings equal (b)'s."""
    from catalogcap.captioner import Captioner
    from catalogcap.demo import catalog
    from catalogcap.settings import Settings

    folder = home / "demo-catalog"
    items = catalog.products(count, seed=2024)
    catalog.write_catalog(folder, items)
    paths = [folder / catalog.filename_for(item) for item in items]
    common = {"home": home, "model": str(ROOT / "catalogcap" / "demo" / "model"), "device": device,
              "generation": {"alt_text": {"num_beams": 1}, "description": {"num_beams": 1}}}
    fast = {"engine": {"int8": True}} if device == "cpu" else {"dtype": "bfloat16"}
    runs = []
    for extra in ({"dtype": "float32"}, fast):
        captioner = Captioner.from_settings(Settings(**common, **extra))
        runs.append({path: result.raw for path, result in captioner.caption_files(paths)})
    exact, other = runs
    return sum(exact[p] == other[p] for p in paths) / len(paths)


def measure(device_name: str = "cpu", *, images: int = 16, size: int = 2000, agreement_images: int = 200,
            max_batch: int = 0, rounds: int = 2, daemon_batch: int = 8, quiet: bool = False) -> dict[str, Any]:
    """Run (a), (a'), (b), (c), (d) one after the other, `rounds` times (best of each), then the demo agreement."""
    import torch
    from blip_base import build_blip_base
    from product_photos import write_photos

    from catalogcap.captioner import Captioner
    from catalogcap.captioner.model import LoadedModel
    from catalogcap.settings import Settings

    home = Path(tempfile.mkdtemp(prefix="catalogcap-throughput-"))
    paths = write_photos(home / "photos", images + 1, (size, size))
    warm, paths = paths[:1], paths[1:]
    model, processor = build_blip_base()
    device = torch.device(device_name)
    model.to(device)
    if not quiet:
        print(f"{device_name}, {torch.get_num_threads()} CPU threads, {len(paths)} photos {size}x{size},"
              f" {TOKENS} greedy tokens", file=sys.stderr)
    settings = Settings(home=home, model="blip-base-random", device=device_name, dtype="float32",
                        generation=greedy(TOKENS), engine={"max_batch": max_batch})
    loaded = LoadedModel(model, processor, "blip-base-random", None, device, torch.float32)
    eager = copy.deepcopy(model)  # catalogcap's captioners switch `model` to SDPA in place
    if device.type == "cpu":
        fast_label = "int8"
        fast = Captioner(loaded, settings.model_copy(update={"engine": settings.engine.model_copy(
            update={"int8": True})}))
    else:
        fast_label = "bf16"
        half = copy.deepcopy(model).to(torch.bfloat16)
        fast = Captioner(LoadedModel(half, processor, "blip-base-random", None, device, torch.bfloat16), settings)
    exact = Captioner(loaded, settings)
    batch = exact.max_batch  # on CUDA probed here: (a') gets the same batch as (b)
    runs = home / "daemon-runs"
    runs.mkdir()
    daemon_settings = settings.model_copy(update={"batch_size": daemon_batch})
    one_at_a_time = daemon_settings.model_copy(update={"queue": daemon_settings.queue.model_copy(
        update={"read_ahead": False})})
    paths_by_label = {
        "(a) naive transformers": ("naive", partial(naive, eager, processor, device=device_name)),
        "(a') transformers batched": ("batched", partial(batched, eager, processor, device=device_name,
                                                           batch=batch)),
        "(b) catalogcap exact": ("exact", partial(catalogcap_path, exact)),
        f"(c) catalogcap {fast_label}": ("fast", partial(catalogcap_path, fast)),
        "(d) daemon path, exact": ("daemon_exact", partial(daemon_path, exact, daemon_settings, runs)),
        "(d) daemon, no read-ahead": ("daemon_serial", partial(daemon_path, exact, one_at_a_time, runs)),
        f"(d) daemon path, {fast_label}": ("daemon_fast", partial(daemon_path, fast, daemon_settings, runs)),
    }
    for _, run in paths_by_label.values():
        run(warm)  # on CUDA this is where the largest batch is probed
    rates: dict[str, float] = {}
    for round_ in range(rounds):  # interleaved, so a burst of load elsewhere does not hit one path only
        for label, (key, run) in paths_by_label.items():
            measured = rate(label, run, paths)
            rates[key] = max(rates.get(key, 0.0), measured)
            if not quiet:
                print(f"  round {round_ + 1}: {label:<26} {measured:7.3f} img/s", file=sys.stderr, flush=True)
    del exact, fast, eager, model, loaded
    result: dict[str, Any] = {f"{key}_img_s": round(value, 4) for key, value in rates.items()}
    for key in ("exact", "fast", "daemon_exact", "daemon_serial", "daemon_fast"):
        result[f"{key}_ratio"] = round(rates[key] / rates["naive"], 3)  # vs (a), the old baseline
        result[f"{key}_vs_batched"] = round(rates[key] / rates["batched"], 3)  # vs (a')
    result["batched_ratio"] = round(rates["batched"] / rates["naive"], 3)
    result.update({
        "device": device_name,
        "fast_path": fast_label,
        "batch": batch,
        "daemon_batch": daemon_batch,
        "images": len(paths),
        "rounds": rounds,
        "threads": torch.get_num_threads(),
    })
    if agreement_images:
        result["agreement"] = round(agreement(device_name, agreement_images, home), 4)
        result["agreement_images"] = agreement_images
    shutil.rmtree(home, ignore_errors=True)
    return result


def print_table(result: dict[str, Any]) -> None:
    label = result["fast_path"]
    print(f"\n  {'path':<30} {'img/s':>7}  vs (a) naive  vs (a') batched")
    print(f"  {'(a) naive transformers':<30} {result['naive_img_s']:7.3f}  {'1.00x':>12}")
    print(f"  {'(a' + chr(39) + ') transformers batched':<30} {result['batched_img_s']:7.3f}"
          f"  {result['batched_ratio']:11.2f}x  {'1.00x':>15}")
    rows = [("(b) catalogcap exact", "exact"), (f"(c) catalogcap {label}", "fast"),
            ("(d) daemon path, exact", "daemon_exact"), ("(d) daemon, no read-ahead", "daemon_serial"),
            (f"(d) daemon path, {label}", "daemon_fast")]
    for name, key in rows:
        print(f"  {name:<30} {result[key + '_img_s']:7.3f}  {result[key + '_ratio']:11.2f}x"
              f"  {result[key + '_vs_batched']:14.2f}x")
    print(f"\n  (a') and (b) {result['batch']} images per model call; (d) batches of {result['daemon_batch']}"
          " through Worker.drain (claim, decode, caption, commit)")
    if "agreement" in result:
        print(f"\n  demo model, {result['agreement_images']} images, greedy: {label} captions identical to exact"
              f" for {result['agreement']:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of the table.")
    parser.add_argument("--images", type=int, default=16, help="Photos captioned by each path.")
    parser.add_argument("--size", type=int, default=2000, help="Photo width and height in pixels.")
    parser.add_argument("--agreement-images", type=int, default=200, help="Demo images for the agreement (0: skip).")
    parser.add_argument("--rounds", type=int, default=2, help="Interleaved repetitions; the best of each path.")
    parser.add_argument("--max-batch", type=int, default=0, help="engine.max_batch (0: the engine's default).")
    parser.add_argument("--daemon-batch", type=int, default=8, help="batch_size of the daemon path (d).")
    parser.add_argument("--threads", type=int, default=0, help="Torch CPU threads (0: torch's default).")
    parser.add_argument("--quick", action="store_true", help="2 photos, 20 agreement images, one round.")
    args = parser.parse_args()
    if args.quick:
        args.images, args.agreement_images, args.rounds = 2, 20, 1

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("caption_throughput: --device cuda, but torch sees no CUDA GPU here")
    if args.threads:
        torch.set_num_threads(args.threads)
    result = measure(args.device, images=args.images, size=args.size, agreement_images=args.agreement_images,
                     max_batch=args.max_batch, rounds=args.rounds, daemon_batch=args.daemon_batch,
                     quiet=args.json)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
