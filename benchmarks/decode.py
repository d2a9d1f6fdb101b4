"""Decoding: 24-megapixel product JPEGs to BLIP's input tensor, Pillow + BlipImageProcessor vs catalogcap.

    python benchmarks/decode.py [--json] [--images 8] [--size 6000x4000] [--quick]

Baselines, both ending in `BlipImageProcessor`:

- full decode: `Image.open(path).convert("RGB")`, as every tutorial does;
- Pillow draft + reducing_gap: what plain Pillow does when asked to shrink a JPEG well
  (the recipe of `Image.thumbnail`): `image.draft("RGB", (g*384, g*384))` (libjpeg DCT
  scaling), then `resize((384, 384), BICUBIC, reducing_gap=g)`, for the same `g` as the
  catalogcap row it is compared with.

catalogcap: `Captioner.load_pixels`'s path, `PixelMaker.load`: the
safe intake with JPEG draft decoding and integer reduction down to `reducing_gap` times
the model size, one bicubic resize, normalisation by lookup table in torch. Both run one
image at a time on one thread (ms per image, mean over the photos after one warm-up).

The photos are drawn once and kept in the temporary folder (catalogcap-bench-photos).
Reports each path's ms, its ratio to the full decode and (catalogcap) to Pillow draft at
the same gap, and the largest and mean absolute pixel difference from the full-decode
tensor, in 0-255 steps, for the default `engine.reducing_gap` and for the neighbours 1 and 3.
Not a test: absolute numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

MODEL_SIZE = 384


def per_image_ms(convert: Any, paths: list[Path]) -> tuple[float, list[Any]]:
    """Mean ms per image of `convert(path)`, after one untimed call; and the outputs."""
    convert(paths[0])
    outputs = []
    start = time.perf_counter()
    for path in paths:
        outputs.append(convert(path))
    return (time.perf_counter() - start) * 1000 / len(paths), outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of the table.")
    parser.add_argument("--images", type=int, default=8, help="Photos decoded by each path.")
    parser.add_argument("--size", default="6000x4000", help="Photo size WIDTHxHEIGHT (24 MP by default).")
    parser.add_argument("--quick", action="store_true", help="3 photos.")
    args = parser.parse_args()
    if args.quick:
        args.images = 3
    width, height = (int(v) for v in args.size.lower().split("x"))

    import torch
    from PIL import Image
    from product_photos import write_photos
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    from catalogcap.captioner.pixels import PixelMaker, PixelSpec
    from catalogcap.settings import EngineSettings

    torch.set_num_threads(1)
    folder = Path(tempfile.gettempdir()) / "catalogcap-bench-photos"
    paths = write_photos(folder, args.images, (width, height))
    processor = BlipImageProcessorPil(size={"height": MODEL_SIZE, "width": MODEL_SIZE})
    spec = PixelSpec.from_processor(processor)
    to_steps = torch.tensor(spec.std).view(1, 3, 1, 1) * 255  # normalised units -> 0-255 steps

    def baseline(path: Path) -> torch.Tensor:
        with Image.open(path) as image:
            return processor(images=image.convert("RGB"), return_tensors="pt").pixel_values[0]

    def pillow_draft(gap: float) -> Callable[[Path], torch.Tensor]:
        def convert(path: Path) -> torch.Tensor:
            with Image.open(path) as image:
                draft = round(MODEL_SIZE * gap)
                image.draft("RGB", (draft, draft))
                small = image.convert("RGB").resize((MODEL_SIZE, MODEL_SIZE), Image.Resampling.BICUBIC,
                                                    reducing_gap=gap)
            return processor(images=small, return_tensors="pt").pixel_values[0]

        return convert

    base_ms, reference = per_image_ms(baseline, paths)
    reference_batch = torch.stack(reference)

    def row(ms: float, outputs: list[torch.Tensor], **extra: float) -> dict[str, float]:
        steps = (torch.stack(outputs) - reference_batch).abs() * to_steps
        return {"ms": round(ms, 2), "ratio": round(base_ms / ms, 2), **extra,
                "max_pixel_diff": round(steps.max().item(), 2), "mean_pixel_diff": round(steps.mean().item(), 3)}

    default_gap = EngineSettings().reducing_gap
    rows: dict[str, dict[str, float]] = {}
    pillow_rows: dict[str, dict[str, float]] = {}
    for gap in sorted({1.0, default_gap, 3.0}):
        pillow_ms, pillow_out = per_image_ms(pillow_draft(gap), paths)
        pillow_rows[f"{gap:g}"] = row(pillow_ms, pillow_out)
        maker = PixelMaker(spec, reducing_gap=gap)
        fast_ms, outputs = per_image_ms(maker.load, paths)
        to_pillow = (torch.stack(outputs) - torch.stack(pillow_out)).abs() * to_steps
        rows[f"{gap:g}"] = row(fast_ms, outputs, vs_pillow_draft=round(pillow_ms / fast_ms, 2),
                               max_diff_to_pillow_draft=round(to_pillow.max().item(), 2))
    chosen = rows[f"{default_gap:g}"]
    result: dict[str, Any] = {
        "pil_ms": round(base_ms, 2), "pillow_draft_ms": pillow_rows[f"{default_gap:g}"]["ms"],
        "catalogcap_ms": chosen["ms"], "ratio": chosen["ratio"], "vs_pillow_draft": chosen["vs_pillow_draft"],
        "max_pixel_diff": chosen["max_pixel_diff"], "mean_pixel_diff": chosen["mean_pixel_diff"],
        "reducing_gap": default_gap, "images": len(paths), "size": f"{width}x{height}", "by_reducing_gap": rows,
        "pillow_draft_by_reducing_gap": pillow_rows,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{len(paths)} JPEGs {width}x{height} -> {MODEL_SIZE}x{MODEL_SIZE} tensor, one thread, ms per image")
    print(f"\n  {'path':<36} {'ms':>7} {'vs full':>8} {'vs draft':>9} {'max diff':>9} {'mean diff':>10}")
    print(f"  {'PIL full decode + BlipImageProcessor':<36} {base_ms:7.1f} {'1.0x':>8} {'-':>9} {'-':>9} {'-':>10}")
    for gap, line in rows.items():
        pillow = pillow_rows[gap]
        print(f"  {'Pillow draft + reducing_gap ' + gap:<36} {pillow['ms']:7.1f} {pillow['ratio']:7.1f}x"
              f" {'1.0x':>9} {pillow['max_pixel_diff']:9.1f} {pillow['mean_pixel_diff']:10.2f}")
        label = f"catalogcap, reducing_gap {gap}" + (" *" if float(gap) == default_gap else "")
        print(f"  {label:<36} {line['ms']:7.1f} {line['ratio']:7.1f}x {line['vs_pillow_draft']:8.1f}x"
              f" {line['max_pixel_diff']:9.1f} {line['mean_pixel_diff']:10.2f}")
    print("\n  vs draft: against Pillow draft + reducing_gap at the same gap; differences in 0-255 steps"
          "\n  against the full-decode tensor; * the default (engine.reducing_gap)")
    print("  catalogcap against Pillow draft at the same gap, largest difference: "
          + ", ".join(f"gap {gap} {line['max_diff_to_pillow_draft']:g}" for gap, line in rows.items()))


if __name__ == "__main__":
    main()
