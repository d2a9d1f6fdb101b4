"""Decoding: 24-megapixel product JPEGs to BLIP's input tensor, PIL + BlipImageProcessor vs catalogcap.

    python benchmarks/decode.py [--json] [--images 8] [--size 6000x4000]

Baseline: `Image.open(path).convert("RGB")` (a full decode) and `BlipImageProcessor`, as
every tutorial does. catalogcap: `Captioner.load_pixels`'s path, `PixelMaker.load`: the
safe intake with JPEG draft decoding and integer reduction down to `reducing_gap` times
the model size, one bicubic resize, normalisation by lookup table in torch. Both run one
image at a time on one thread (ms per image, mean over the photos after one warm-up).

The photos are drawn once and kept in the temporary folder (catalogcap-bench-photos).
Reports the ratio and the largest and mean absolute pixel difference from the baseline,
in 0-255 steps, for the default `engine.reducing_gap` and for the neighbours 1 and 3.
Not a test: absolute numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
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

    base_ms, reference = per_image_ms(baseline, paths)
    reference_batch = torch.stack(reference)
    default_gap = EngineSettings().reducing_gap
    rows: dict[str, dict[str, float]] = {}
    for gap in sorted({1.0, default_gap, 3.0}):
        maker = PixelMaker(spec, reducing_gap=gap)
        fast_ms, outputs = per_image_ms(maker.load, paths)
        steps = (torch.stack(outputs) - reference_batch).abs() * to_steps
        rows[f"{gap:g}"] = {"ms": round(fast_ms, 2), "ratio": round(base_ms / fast_ms, 2),
                            "max_pixel_diff": round(steps.max().item(), 2),
                            "mean_pixel_diff": round(steps.mean().item(), 3)}
    chosen = rows[f"{default_gap:g}"]
    result: dict[str, Any] = {
        "pil_ms": round(base_ms, 2), "catalogcap_ms": chosen["ms"], "ratio": chosen["ratio"],
        "max_pixel_diff": chosen["max_pixel_diff"], "mean_pixel_diff": chosen["mean_pixel_diff"],
        "reducing_gap": default_gap, "images": len(paths), "size": f"{width}x{height}", "by_reducing_gap": rows,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{len(paths)} JPEGs {width}x{height} -> {MODEL_SIZE}x{MODEL_SIZE} tensor, one thread, ms per image")
    print(f"\n  {'path':<34} {'ms':>7} {'ratio':>6} {'max diff':>9} {'mean diff':>10}")
    print(f"  {'PIL full decode + BlipImageProcessor':<34} {base_ms:7.1f} {'1.0x':>6} {'-':>9} {'-':>10}")
    for gap, row in rows.items():
        label = f"catalogcap, reducing_gap {gap}" + (" *" if float(gap) == default_gap else "")
        print(f"  {label:<34} {row['ms']:7.1f} {row['ratio']:5.1f}x {row['max_pixel_diff']:9.1f}"
              f" {row['mean_pixel_diff']:10.2f}")
    print("\n  differences in 0-255 steps against the baseline tensor; * the default (engine.reducing_gap)")


if __name__ == "__main__":
    main()
