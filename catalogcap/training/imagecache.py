"""Training images as the model sees them, with memory flat in the number of reviews.

Every file goes through `FileToPixels`, the captioner's own pipeline (so training,
evaluation and serving see identical tensors). With the vision encoder frozen (the default
LoRA targets), each image's encoder output is computed once, streamed to safetensors shards
under the run folder, and read back a batch at a time with positioned reads (no mmap, no
whole-file loads): memory holds one batch whatever the number of images. When the cache
would pass `training.embed_cache_gb`, or the encoder itself is trained, pixels are decoded
again for every batch, a batch ahead of the model.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from catalogcap import images
from catalogcap.captioner.pixels import FileToPixels, Prefetcher

log = logging.getLogger("catalogcap.training")

ENCODE_BATCH = 32
_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
_NAMES = {v: k for k, v in _DTYPES.items()}


@dataclass(frozen=True)
class _Shard:
    path: Path
    offset: int  # where the tensor's bytes start in the file
    row_bytes: int
    shape: tuple[int, ...]  # of one row
    dtype: torch.dtype


def _read_header(path: Path) -> _Shard:
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    info = header["embeds"]
    shape = tuple(info["shape"][1:])
    dtype = _DTYPES[info["dtype"]]
    row = torch.empty(shape, dtype=dtype).nbytes
    return _Shard(path, 8 + length + info["data_offsets"][0], row, shape, dtype)


class EmbeddingCache:
    """Encoder outputs by image fingerprint, in shards of `ENCODE_BATCH` rows under `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.index: dict[str, tuple[int, int]] = {}
        self.failed: dict[str, str] = {}
        self._shards: dict[int, _Shard] = {}

    @property
    def complete(self) -> bool:
        return (self.folder / "index.json").is_file()

    def open(self) -> EmbeddingCache:
        data = json.loads((self.folder / "index.json").read_text(encoding="utf-8"))
        self.index = {fp: (int(s), int(r)) for fp, (s, r) in data["index"].items()}
        self.failed = data["failed"]
        return self

    def build(self, encode: Any, paths: dict[str, str], load: FileToPixels, *, threads: int = 0,
              part: tuple[int, int] = (0, 1)) -> EmbeddingCache:
        """Encode every image of `paths` (fingerprint -> file) once; unreadable ones are recorded.

        With `part=(rank, ranks)` this process encodes every ranks-th image (in fingerprint order)
        into its own shards and index part; `merge` then joins the parts."""
        from safetensors.torch import save_file

        rank, ranks = part
        self.folder.mkdir(parents=True, exist_ok=True)
        prefetcher = Prefetcher(lambda fp: load(paths[fp]), batch_size=ENCODE_BATCH, threads=threads,
                                catch=(images.ImageRejected,))
        shard = rank
        for batch in prefetcher.batches(sorted(paths)[rank::ranks]):
            for fp, error in batch.failed:
                self.failed[fp] = str(error)
            if batch.pixels is None:
                continue
            embeds = encode(batch.pixels).contiguous()
            save_file({"embeds": embeds}, str(self.folder / f"shard-{shard:06d}.safetensors"))
            self.index.update({fp: (shard, row) for row, fp in enumerate(batch.items)})
            shard += ranks
        name = "index.json" if ranks == 1 else f"index.part-{rank}.json"
        tmp = self.folder / (name + ".tmp")
        tmp.write_text(json.dumps({"index": self.index, "failed": self.failed}), encoding="utf-8")
        tmp.replace(self.folder / name)  # written last: a killed build is simply redone
        return self

    def merge(self, ranks: int) -> EmbeddingCache:
        """Join the index parts `ranks` processes wrote (see `build`) into the cache's index."""
        joined: dict[str, Any] = {"index": {}, "failed": {}}
        for rank in range(ranks):
            data = json.loads((self.folder / f"index.part-{rank}.json").read_text(encoding="utf-8"))
            joined["index"].update(data["index"])
            joined["failed"].update(data["failed"])
        tmp = self.folder / "index.json.tmp"
        tmp.write_text(json.dumps(joined), encoding="utf-8")
        tmp.replace(self.folder / "index.json")
        return self.open()

    def _shard(self, number: int) -> _Shard:
        if number not in self._shards:
            self._shards[number] = _read_header(self.folder / f"shard-{number:06d}.safetensors")
        return self._shards[number]

    def rows(self, fingerprints: list[str]) -> torch.Tensor:
        """The cached outputs of `fingerprints`, stacked in that order."""
        out: list[torch.Tensor] = []
        for fp in fingerprints:
            number, row = self.index[fp]
            shard = self._shard(number)
            fd = os.open(shard.path, os.O_RDONLY)
            try:
                data = os.pread(fd, shard.row_bytes, shard.offset + row * shard.row_bytes)
            finally:
                os.close(fd)
            out.append(torch.frombuffer(bytearray(data), dtype=shard.dtype).view(shard.shape))
        return torch.stack(out)


def cache_bytes(n_images: int, model: Any, dtype: torch.dtype) -> int:
    """Disk the encoder outputs of `n_images` images would take."""
    vision = model.config.vision_config
    tokens = (vision.image_size // vision.patch_size) ** 2 + 1
    return n_images * tokens * vision.hidden_size * torch.empty((), dtype=dtype).element_size()


class ImageSource:
    """Image embeddings for batches of training examples: from the disk cache, or encoded now."""

    def __init__(self, load: FileToPixels, paths: dict[str, str], cache: EmbeddingCache | None,
                 vision: Any, device: torch.device, *, threads: int = 0) -> None:
        self.load = load
        self.paths = paths
        self.cache = cache
        self.vision = vision
        self.device = device
        self.threads = threads
        self.failed: dict[str, str] = dict(cache.failed) if cache else {}

    @property
    def cached(self) -> bool:
        return self.cache is not None

    def usable(self, fingerprint: str) -> bool:
        return fingerprint not in self.failed

    def batches(self, items: list[Any], batch_size: int, fingerprint_of: Any, *, grad: bool
                ) -> Iterator[tuple[list[Any], torch.Tensor]]:
        """`items` in chunks of `batch_size`, in order: the chunk's items whose image is usable, and
        their image embeddings (with gradients through the encoder when `grad`); chunks with no
        usable image are left out."""
        chunks = (items[start:start + batch_size] for start in range(0, len(items), batch_size))
        for kept, embeds in self.groups(chunks, fingerprint_of, grad=grad):
            if embeds is not None:
                yield kept, embeds

    def groups(self, groups: Iterable[list[Any]], fingerprint_of: Any, *, grad: bool
               ) -> Iterator[tuple[list[Any], torch.Tensor | None]]:
        """For each group of items, in order: its items whose image is usable and their image
        embeddings (None when there are none, so that ranks stay in step group by group)."""
        if self.cache is not None:
            for group in groups:
                kept = [item for item in group if self.usable(fingerprint_of(item))]
                yield kept, (self.cache.rows([fingerprint_of(i) for i in kept]).to(self.device) if kept else None)
            return
        prefetcher = Prefetcher(lambda item: self.load(self.paths[fingerprint_of(item)]), batch_size=1,
                                threads=self.threads, catch=(images.ImageRejected,))
        for loaded in prefetcher.groups(groups):
            for item, error in loaded.failed:
                self.failed[fingerprint_of(item)] = str(error)
            if loaded.pixels is None:
                yield [], None
                continue
            pixels = loaded.pixels.to(self.device)
            with torch.set_grad_enabled(grad):
                embeds = self.vision(pixel_values=pixels)[0]
            yield loaded.items, embeds
