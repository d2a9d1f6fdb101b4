"""What prompt templates with product fields cost: the fixed-prompt path against per-image prompts.

    python benchmarks/prompt_overhead.py [--model DIR] [--images 16] [--rounds 3] [--json]

All paths caption the same decoded pixel batch in one process, interleaved, best of `--rounds` (3):

  (1) fixed: no field template (the default settings; prompts tokenized once per captioner)
  (2) template, no context: `{brand} {category},` but no image has product data (one distinct
      prompt: per-image rendering and grouping with the same generate calls as (1))
  (3) template, 4 brands: the images spread over 4 distinct rendered prompts (4 alt-text calls)
  (4) one image per call: what grouping avoids

Default model: the offline demo model (tiny, so the per-image bookkeeping is as visible as it
can be). Not a test: absolute numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEMO = Path(__file__).resolve().parents[1] / "catalogcap" / "demo" / "model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEMO))
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch
    from PIL import Image

    from catalogcap.captioner import Captioner
    from catalogcap.captioner.model import load_model
    from catalogcap.products.prompts import ImageRequest
    from catalogcap.settings import load_settings

    with tempfile.TemporaryDirectory() as home:
        os.environ["CATALOGCAP_HOME"] = home
        settings = load_settings({"model": args.model})
        templated = load_settings({"model": args.model, "generation.alt_text.prompt": "{brand} {category},"})
    loaded = load_model(args.model, device="cpu", dtype="float32")
    fixed, per_image = Captioner(loaded, settings), Captioner(loaded, templated)
    pictures = [Image.new("RGB", (96, 96), ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256))
                for i in range(args.images)]
    pixels = torch.stack([fixed.prepare(p) for p in pictures])
    empty = [ImageRequest(f"/p/{i}.jpg", {}) for i in range(args.images)]
    brands = [ImageRequest(f"/p/{i}.jpg", {"brand": f"Brand{i % 4}", "category": "lamp"})
              for i in range(args.images)]
    paths = {
        "(1) fixed": lambda: fixed.caption_pixels(pixels),
        "(2) template, no context": lambda: per_image.caption_pixels(pixels, empty),
        "(3) template, 4 brands": lambda: per_image.caption_pixels(pixels, brands),
        "(4) one image per call": lambda: [per_image.caption_pixels(pixels[i:i + 1], brands[i:i + 1])
                                           for i in range(args.images)],
    }
    for run in paths.values():  # warm-up
        run()
    best = dict.fromkeys(paths, float("inf"))
    for _ in range(args.rounds):
        for name, run in paths.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    rates = {name: args.images / seconds for name, seconds in best.items()}
    base = rates["(1) fixed"]
    if args.json:
        print(json.dumps({"img_s": {k: round(v, 2) for k, v in rates.items()}, "images": args.images,
                          "rounds": args.rounds, "model": args.model}))
        return
    print(f"{'path':28} {'img/s':>8} {'vs (1)':>8}")
    for name, rate in rates.items():
        print(f"{name:28} {rate:8.1f} {rate / base:7.2f}x")


if __name__ == "__main__":
    main()
