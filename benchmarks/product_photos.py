"""Real-size product photos for the speed benchmarks: the demo catalog's drawings, photographed.

A flat synthetic drawing compresses to almost nothing and decodes faster than any camera
JPEG, which would flatter the decoders. These get what a studio photo has: a vignette and
sensor noise, saved at quality 90 (a 24-megapixel one is about 5 MB, like a camera's).
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
from PIL import Image

from catalogcap.demo import catalog


def photo(index: int, size: tuple[int, int], *, seed: int = 0) -> bytes:
    """JPEG bytes of product `index` of the seeded demo catalog, drawn at `size` (width, height)."""
    item = catalog.products(index + 1, seed=seed)[index]
    item = dataclasses.replace(item, size=size, transparent=False, rotated=False)
    drawing = np.asarray(catalog.draw(item).convert("RGB"), dtype=np.float32)
    width, height = size
    yy = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    xx = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    vignette = (1.0 - 0.15 * (xx**2 + yy**2))[..., None]
    noise = np.random.default_rng(seed * 100_003 + index).normal(0.0, 6.0, drawing.shape).astype(np.float32)
    pixels = np.clip(drawing * vignette + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def write_photos(folder: Path, count: int, size: tuple[int, int], *, seed: int = 0) -> list[Path]:
    """`count` photos as ``folder/photo-NNN.jpg`` (kept if already there); their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"photo-{size[0]}x{size[1]}-{seed}-{index:03d}.jpg"
        if not path.exists():
            path.write_bytes(photo(index, size, seed=seed))
        paths.append(path)
    return paths
