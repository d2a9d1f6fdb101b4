"""Images to the model's input tensor, fast, and batches of them decoded ahead of the model.

`BlipImageProcessor` (its PIL backend, since torchvision is not installed) turns each
picture into numpy, back into PIL to resize, then rescales in float64 and normalises in
float32. Here a picture goes: JPEG draft decoding and integer reduction down to `reducing_gap`
times the model size (done by `catalogcap.images.load` with `target_size`), one PIL bicubic
resize straight to the model size, then a 256-entry lookup table per channel in torch that reproduces the processor's
rescale-and-normalise bit for bit. Given the same decoded picture, `to_pixels` equals the
processor exactly; the only difference from a full decode is the draft scaling itself.

`Prefetcher` runs a loader over items in a thread pool and hands out batches in order,
keeping the next batch decoding (and, on CUDA, stacked into pinned memory) while the
model works on the current one.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from PIL import Image

from catalogcap import images

T = TypeVar("T")


@dataclass(frozen=True)
class PixelSpec:
    """What the model expects: size, resampling filter, rescale factor, mean and std per channel."""

    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    rescale: float = 1 / 255
    resample: int = Image.Resampling.BICUBIC

    @classmethod
    def from_processor(cls, image_processor: Any) -> PixelSpec:
        """Read the spec off a (saved) `BlipImageProcessor`."""
        size = image_processor.size
        size = size if isinstance(size, dict) else {"height": size.height, "width": size.width}
        return cls(
            height=int(size["height"]),
            width=int(size["width"]),
            mean=tuple(float(v) for v in image_processor.image_mean),  # type: ignore[arg-type]
            std=tuple(float(v) for v in image_processor.image_std),  # type: ignore[arg-type]
            rescale=float(image_processor.rescale_factor),
            resample=int(image_processor.resample),
        )

    def target_size(self, reducing_gap: float = 2.0) -> int:
        """The short side a decoder may shrink a picture to before the final resize (see `PixelMaker`)."""
        return max(1, round(max(self.height, self.width) * reducing_gap))

    def table(self) -> torch.Tensor:
        """(3 * 256,) float32: channel c, byte v -> normalised value, computed as the processor does."""
        values = (np.arange(256, dtype=np.float64) * self.rescale).astype(np.float32)
        mean = np.asarray(self.mean, dtype=np.float32)[:, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None]
        return torch.from_numpy(((values[None, :] - mean) / std).reshape(-1).copy())


class PixelMaker:
    """Thread-safe converter of upright RGB pictures (or files) into normalised (3, H, W) tensors.

    `reducing_gap` (as in Pillow's `Image.resize`) is how far above the model size a file
    may be shrunk cheaply (JPEG DCT scaling, box reduction) before the bicubic resize: at 1
    the cheap shrink does nearly all the work and aliases fine patterns (on the demo model 14%
    of images then get other captions); at 2, 2.5%; at 3 the result is within a few steps of
    resizing the full picture (benchmarks/decode.py measures the pixel differences).
    """

    def __init__(self, spec: PixelSpec, *, reducing_gap: float = 2.0) -> None:
        self.spec = spec
        self.reducing_gap = reducing_gap
        self._table = spec.table()
        self._offsets = (torch.arange(3, dtype=torch.int64) * 256).view(3, 1, 1)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """An RGB picture -> the model's input for it, equal to `BlipImageProcessor`'s."""
        spec = self.spec
        if image.mode != "RGB":
            image = image.convert("RGB")
        if image.size != (spec.width, spec.height):
            image = image.resize((spec.width, spec.height), resample=spec.resample)
        hwc = torch.from_numpy(np.array(image))
        index = hwc.permute(2, 0, 1).to(torch.int64) + self._offsets
        return self._table[index]

    def load(self, path: str | os.PathLike[str], *, max_pixels: int = images.DEFAULT_MAX_PIXELS,
             max_bytes: int = images.DEFAULT_MAX_BYTES) -> torch.Tensor:
        """Read a file through the safe intake (draft-decoded, reduced) into the model's input."""
        picture = images.load(Path(path), max_pixels=max_pixels, max_bytes=max_bytes,
                               target_size=self.spec.target_size(self.reducing_gap))
        return self(picture)


class FileToPixels:
    """The one way a file becomes model input, used by serving, training and evaluation alike.

    With `engine.fast_decode`, `PixelMaker.load` (JPEG draft decode and reduction down to
    `reducing_gap` times the model size, bicubic resize, lookup-table normalisation); without
    it, a full decode through the intake and `BlipImageProcessor`. Thread-safe. Raises
    `images.ImageRejected` for a file the intake refuses.
    """

    def __init__(self, image_processor: Any, engine: Any, *, max_pixels: int = images.DEFAULT_MAX_PIXELS,
                 max_bytes: int = images.DEFAULT_MAX_BYTES) -> None:
        self.image_processor = image_processor
        self.fast = bool(engine.fast_decode)
        self.maker = PixelMaker(PixelSpec.from_processor(image_processor), reducing_gap=engine.reducing_gap)
        self.limits = {"max_pixels": max_pixels, "max_bytes": max_bytes}

    @classmethod
    def from_settings(cls, image_processor: Any, settings: Any) -> FileToPixels:
        return cls(image_processor, settings.engine, max_pixels=settings.max_pixels,
                   max_bytes=int(settings.max_file_mb * 2**20))

    def picture(self, image: Image.Image) -> torch.Tensor:
        """An upright RGB picture -> its normalised (3, H, W) input."""
        if self.fast:
            return self.maker(image)
        return self.image_processor(images=[image], return_tensors="pt").pixel_values[0]

    def __call__(self, path: str | os.PathLike[str]) -> torch.Tensor:
        if self.fast:
            return self.maker.load(path, **self.limits)
        return self.picture(images.load(Path(path), **self.limits))


def stack(tensors: list[torch.Tensor], *, pin: bool = False) -> torch.Tensor:
    """One (N, 3, H, W) batch; in page-locked memory when `pin`, for a non-blocking copy to a GPU."""
    batch = torch.stack(tensors)
    return batch.pin_memory() if pin else batch


def default_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


@dataclass
class Loaded(Generic[T]):
    """One batch from a `Prefetcher`: the items whose loading worked, their stacked tensors, and the failures."""

    items: list[T]
    pixels: torch.Tensor | None
    failed: list[tuple[T, BaseException]]


class Prefetcher(Generic[T]):
    """Load items in a thread pool and yield them in order as batches, one batch ahead of the consumer.

    Exceptions of the types in `catch` (e.g. `ImageRejected`) are handed back with their
    item; any other exception raised by `load` propagates.
    """

    def __init__(self, load: Callable[[T], torch.Tensor], *, batch_size: int, threads: int = 0,
                 pin: bool = False, catch: tuple[type[BaseException], ...] = ()) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.load = load
        self.batch_size = batch_size
        self.threads = threads or default_threads()
        self.pin = pin
        self.catch = catch

    def batches(self, items: Iterable[T]) -> Iterator[Loaded[T]]:
        source = iter(items)

        def chunks() -> Iterator[list[T]]:
            while chunk := [item for _, item in zip(range(self.batch_size), source)]:
                yield chunk

        return self.groups(chunks())

    def groups(self, groups: Iterable[list[T]]) -> Iterator[Loaded[T]]:
        """One batch per group of `groups`, in order (an empty group gives an empty batch)."""
        source = iter(groups)
        with ThreadPoolExecutor(self.threads, thread_name_prefix="catalogcap-pixels") as pool, \
                ThreadPoolExecutor(1, thread_name_prefix="catalogcap-collate") as collator:
            ahead: deque[Future[Loaded[T]]] = deque()

            def queue_next() -> None:
                group = next(source, None)
                if group is not None:
                    chunk = [(item, pool.submit(self.load, item)) for item in group]
                    ahead.append(collator.submit(self._collate, chunk))

            queue_next()
            queue_next()
            while ahead:
                batch = ahead.popleft().result()
                queue_next()
                yield batch

    def _collate(self, chunk: list[tuple[T, Future[torch.Tensor]]]) -> Loaded[T]:
        items, tensors, failed = [], [], []
        for item, future in chunk:
            try:
                tensors.append(future.result())
                items.append(item)
            except self.catch as exc:
                failed.append((item, exc))
        return Loaded(items, stack(tensors, pin=self.pin) if tensors else None, failed)
