"""The GPU check, as one prepared script: run it on a CUDA machine and keep its output.

    python benchmarks/gpu_check.py [--budget-s 480] [--json] [--out DIR]
    python benchmarks/gpu_check.py --smoke      # every phase on the CPU, tiny sizes: checks the script

Phases, most important first; a phase is skipped once `--budget-s` seconds have passed:

  1. caption_throughput.py --device cuda: transformers per image and batched vs catalogcap
     exact fp32 vs bf16, and both through the daemon's `Worker.drain`, on 16 photos of
     2000x2000 (files to captions), and bf16-vs-fp32 agreement on the demo model (200 images);
  2. the largest batch: probed once for bf16 (time taken, batch used);
  3. model throughput from pinned pixel tensors at that batch (what a backfill sustains
     when decoding keeps up): naive per-image generate, exact fp32, bf16, bf16 with
     torch.compile of the vision encoder; peak GPU memory of each;
  4. decode throughput: files to tensors in the engine's thread pool, alone.

Everything is BLIP-base (random init), 384 px, exactly 20 greedy tokens per caption. The
result is printed (a table, or one JSON object with --json) and written to
``DIR/gpu_check.json`` (default ``$OUT`` when set). Without CUDA it exits with status 2
and says so, unless --smoke.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))


class Budget:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)


def log(message: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def environment(device: Any) -> dict[str, Any]:
    import torch
    import transformers

    info: dict[str, Any] = {"torch": torch.__version__, "transformers": transformers.__version__,
                            "python": platform.python_version(), "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, bf16=torch.cuda.is_bf16_supported())
    return info


def synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def model_throughput(captioner: Any, pixels: Any, device: Any, repeats: int) -> dict[str, Any]:
    """img/s of `caption_pixels` on one pinned batch, `repeats` times after an untimed call; peak memory."""
    import torch

    batch = pixels[: captioner.max_batch]
    captioner.caption_pixels(batch)
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(repeats):
        captioner.caption_pixels(batch)
    synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"img_s": round(repeats * batch.shape[0] / seconds, 2), "batch": batch.shape[0],
            "images": repeats * batch.shape[0], "peak_gib": round(peak, 2) if peak is not None else None}


def naive_model_throughput(model: Any, pixels: Any, device: Any, count: int) -> dict[str, Any]:
    """img/s of one `model.generate` per image from ready tensors (no decode, no processor), fp32."""
    from caption_throughput import TOKENS

    def run(n: int) -> None:
        for i in range(n):
            model.generate(pixel_values=pixels[i:i + 1].to(device), max_new_tokens=TOKENS, min_new_tokens=TOKENS)
        synchronize(device)

    run(2)
    start = time.perf_counter()
    run(count)
    return {"img_s": round(count / (time.perf_counter() - start), 2), "batch": 1, "images": count}


def decode_throughput(paths: list[Path], maker: Any, threads: int, repeat: int) -> dict[str, Any]:
    from catalogcap.captioner.pixels import Prefetcher

    items = paths * repeat
    prefetcher = Prefetcher(maker.load, batch_size=64, threads=threads, pin=False)
    start = time.perf_counter()
    count = sum(len(batch.items) for batch in prefetcher.batches(items))
    return {"img_s": round(count / (time.perf_counter() - start), 1), "threads": prefetcher.threads,
            "images": count}


def run_phases(args: argparse.Namespace, budget: Budget) -> dict[str, Any]:
    import torch
    from blip_base import build_blip_base
    from caption_throughput import TOKENS, greedy, measure
    from product_photos import write_photos

    from catalogcap.captioner import Captioner
    from catalogcap.captioner.model import LoadedModel
    from catalogcap.captioner.pixels import PixelMaker, PixelSpec
    from catalogcap.settings import Settings

    device = torch.device("cpu" if args.smoke else "cuda")
    smoke = {"photos": 2, "agreement": 10, "repeats": 1, "naive_images": 2, "max_batch": 4, "photo_px": 600,
             "decode_repeat": 2, "rounds": 1}
    full = {"photos": 16, "agreement": 200, "repeats": 3, "naive_images": 64, "max_batch": 0, "photo_px": 2000,
            "decode_repeat": 16, "rounds": 2}
    sizes = smoke if args.smoke else full
    result: dict[str, Any] = {"environment": environment(device), "tokens": TOKENS, "skipped": []}

    def phase(name: str, minimum_s: float) -> bool:
        if budget.left() < minimum_s:
            result["skipped"].append(name)
            log(f"skipping {name}: {budget.left():.0f} s of the budget left")
            return False
        log(f"{name} ...")
        return True

    if phase("caption_throughput", 60):
        result["caption_throughput"] = measure(device.type, images=sizes["photos"], size=sizes["photo_px"],
                                               agreement_images=sizes["agreement"],
                                               max_batch=sizes["max_batch"], rounds=sizes["rounds"],
                                               quiet=True)
        log(json.dumps(result["caption_throughput"]))
    if not phase("largest_batch", 60):
        return result
    home = Path(tempfile.mkdtemp(prefix="catalogcap-gpu-check-"))
    model, processor = build_blip_base()
    model.to(device)
    settings = Settings(home=home, model="blip-base-random", device=device.type, generation=greedy(TOKENS),
                        engine={"max_batch": sizes["max_batch"]})
    half = copy.deepcopy(model).to(torch.bfloat16 if device.type == "cuda" else torch.float32)
    bf16 = Captioner(LoadedModel(half, processor, "blip-base-random", None, device, half.dtype), settings)
    start = time.perf_counter()
    batch = bf16.max_batch
    result["largest_batch"] = {"bf16_batch_used": batch, "probe_s": round(time.perf_counter() - start, 1),
                               "remembered_in": str(home / "engine.json")}
    log(json.dumps(result["largest_batch"]))
    pixels = torch.randn(batch, 3, 384, 384)
    pixels = pixels.pin_memory() if device.type == "cuda" else pixels
    repeats = sizes["repeats"]
    throughput: dict[str, Any] = {}
    result["model_throughput"] = throughput
    if phase("model_throughput.bf16", 30):
        throughput["bf16"] = model_throughput(bf16, pixels, device, repeats)
        log(f"bf16 {throughput['bf16']}")
    if phase("model_throughput.naive_fp32", 30):
        with torch.inference_mode():
            throughput["naive_fp32"] = naive_model_throughput(model, pixels, device, sizes["naive_images"])
        log(f"naive {throughput['naive_fp32']}")
    if phase("model_throughput.exact_fp32", 90):
        exact = Captioner(LoadedModel(model, processor, "blip-base-random", None, device, torch.float32), settings)
        throughput["exact_fp32"] = model_throughput(exact, pixels, device, repeats)
        log(f"exact {throughput['exact_fp32']}")
        del exact
    if not args.smoke and phase("model_throughput.bf16_compile", 180):
        compiled_settings = settings.model_copy(update={"engine": settings.engine.model_copy(
            update={"compile": True})})
        compiled = Captioner(bf16.loaded, compiled_settings)
        start = time.perf_counter()
        throughput["bf16_compile"] = model_throughput(compiled, pixels, device, repeats)
        throughput["bf16_compile"]["including_compile_s"] = round(time.perf_counter() - start, 1)
        log(f"bf16+compile {throughput['bf16_compile']}")
    if phase("decode_throughput", 30):
        paths = write_photos(home / "photos", sizes["photos"], (sizes["photo_px"], sizes["photo_px"]))
        maker = PixelMaker(PixelSpec.from_processor(processor.image_processor),
                           reducing_gap=settings.engine.reducing_gap)
        result["decode_throughput"] = decode_throughput(paths, maker, os.cpu_count() or 1, sizes["decode_repeat"])
        log(f"decode {result['decode_throughput']}")
    shutil.rmtree(home, ignore_errors=True)
    return result


def print_summary(result: dict[str, Any]) -> None:
    from caption_throughput import print_table

    print(json.dumps(result["environment"]))
    if "caption_throughput" in result:
        print("\nfiles to captions (caption_throughput.py):")
        print_table(result["caption_throughput"])
    if "largest_batch" in result:
        print(f"\nlargest batch (bf16): {result['largest_batch']}")
    for name, row in result.get("model_throughput", {}).items():
        print(f"  model {name:<14} {row['img_s']:>9} img/s  batch {row['batch']:>5}  peak {row.get('peak_gib')} GiB")
    if "decode_throughput" in result:
        print(f"\ndecode: {result['decode_throughput']}")
    if result["skipped"]:
        print(f"\nskipped (budget): {', '.join(result['skipped'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-s", type=float, default=480.0, help="Skip phases once this many seconds passed.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of the summary.")
    parser.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None,
                        help="Folder for gpu_check.json (default: $OUT when set).")
    parser.add_argument("--smoke", action="store_true", help="Run every phase on the CPU with tiny sizes.")
    args = parser.parse_args()

    import torch

    if not args.smoke and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA GPU visible to torch {torch.__version__} (CUDA build: {torch.version.cuda});"
              " run this on a CUDA machine (or --smoke to check the script on the CPU)", file=sys.stderr)
        sys.exit(2)
    budget = Budget(args.budget_s)
    result = run_phases(args, budget)
    result["elapsed_s"] = round(args.budget_s - budget.left(), 1)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    if args.json:
        print(json.dumps(result))
    else:
        print_summary(result)


if __name__ == "__main__":
    main()
