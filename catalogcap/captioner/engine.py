"""What `EngineSettings` does to a loaded BLIP, and the largest batch a GPU can caption at once.

`apply_engine` switches attention to SDPA (equal to eager within 1e-5), quantizes the
Linear layers to dynamic int8 on CPU when asked, and compiles the vision encoder when
asked. The text decoder is left uncompiled: its key/value cache grows every step, so a
compiled decoder would recompile per step, and the vision encoder is most of the work.

`largest_batch` finds, by doubling and then bisection, the biggest batch that does not run
out of memory; `BatchMemory` keeps the answer in ``home/engine.json`` so the search runs
once per model, GPU and generation settings.
"""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from catalogcap.captioner.fast import disable_sdpa, enable_sdpa, quantize_int8
from catalogcap.errors import CatalogcapError
from catalogcap.settings import EngineSettings

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameter numbers (malloc.h)
CPU_MAX_BATCH = 32  # past this a CPU gains nothing from batching and only adds latency
SAFETY = 0.9  # share of the probed largest batch that is used: allocator fragmentation varies


class EngineError(CatalogcapError):
    """The engine cannot run as configured (e.g. not even one image fits on the GPU)."""


@dataclass(frozen=True)
class EngineState:
    """What was actually applied to a model (a setting can be ignored where it does not apply)."""

    sdpa: bool = False
    int8: bool = False
    compile: bool = False

    def record(self) -> dict[str, bool]:
        return asdict(self)

    @classmethod
    def wanted(cls, engine: EngineSettings, device: torch.device, dtype: torch.dtype) -> EngineState:
        """What `apply_engine` makes of `engine` on this device and dtype."""
        return cls(sdpa=engine.sdpa, int8=engine.int8 and _int8_applies(device, dtype), compile=engine.compile)


def _int8_applies(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cpu" and dtype == torch.float32


def apply_engine(model: nn.Module, engine: EngineSettings, device: torch.device, dtype: torch.dtype, *,
                 inplace: bool = False) -> tuple[nn.Module, EngineState]:
    """`model` with the engine's attention, int8 and compile settings applied, and what was applied.

    SDPA is switched in place (it computes the same numbers). int8 quantizes a copy unless
    `inplace`, so a model shared with other captioners keeps its fp32 weights.
    """
    if engine.sdpa:
        enable_sdpa(model)
    else:
        disable_sdpa(model)
    state = EngineState.wanted(engine, device, dtype)
    if state.int8:
        model = quantize_int8(model, inplace=inplace)
    elif engine.int8:
        log.warning("engine.int8 applies to float32 models on CPU only; ignored on %s/%s", device.type,
                    str(dtype).removeprefix("torch."))
    if state.compile:
        model.vision_model.compile()  # type: ignore[union-attr, operator]
    return model, state


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory in the process; whether it could (not on other libcs).

    By default glibc serves blocks above 32 MiB with mmap and returns them on free, so every
    batch-sized activation (a [16, 577, 3072] float tensor is 113 MB) comes back as fresh
    pages that the kernel zero-fills on first touch: about a tenth of CPU captioning time went
    to those page faults. No mmap for big blocks and no trimming makes the heap keep them.
    Process-wide and permanent; blocks too big for a thread's arena still fall back to mmap.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**30))


def default_max_batch(device: torch.device) -> int | None:
    """The batch limit when `engine.max_batch` is 0: None (probe it) on CUDA, a fixed cap elsewhere."""
    return None if device.type == "cuda" else CPU_MAX_BATCH


def fits(try_batch: Callable[[int], object], n: int, cleanup: Callable[[], None] | None = None) -> bool:
    """Whether `try_batch(n)` runs without running out of memory (any other error propagates)."""
    try:
        try_batch(n)
        return True
    except torch.OutOfMemoryError:
        gc.collect()  # the failed attempt's tensors may still be held by the traceback
        return False
    finally:
        if cleanup is not None:
            cleanup()


def largest_batch(try_batch: Callable[[int], object], *, start: int = 8, limit: int = 4096, step: int = 8,
                  cleanup: Callable[[], None] | None = None) -> int:
    """The largest n <= `limit` for which `try_batch(n)` fits: doubling from `start`, then bisection.

    Bisection stops once the bracket is within `step` images or an eighth of the batch (finer
    is wasted: `usable` keeps a 10% margin anyway), or 1 image below `step`.
    Raises `EngineError` when not even one fits.
    """
    start = max(1, min(start, limit))
    good, bad = 0, None
    n = start
    while True:
        if fits(try_batch, n, cleanup):
            good = n
            if n >= limit:
                return n
            n = min(n * 2, limit)
        else:
            bad = n
            break
    while bad - good > (max(step, good // 8) if good >= step else 1):
        middle = (good + bad) // 2
        if fits(try_batch, middle, cleanup):
            good = middle
        else:
            bad = middle
    if good == 0:
        raise EngineError("not even one image fits in GPU memory; use a smaller model, dtype or max_new_tokens")
    return good


def usable(probed: int, step: int = 8) -> int:
    """The batch actually used out of a probed maximum: `SAFETY` of it, rounded down to `step`."""
    n = int(probed * SAFETY)
    return max(1, n - n % step if n >= step else n)


class BatchMemory:
    """Probed batch limits by key, in a small JSON file (written atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s (%s); the batch size will be probed again", self.path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> int | None:
        value = self._read().get("max_batch", {}).get(key)
        return int(value) if isinstance(value, int) and value > 0 else None

    def put(self, key: str, value: int) -> None:
        data = self._read()
        data.setdefault("max_batch", {})[key] = int(value)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".engine-", suffix=".json", dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
        os.replace(tmp, self.path)


def cuda_cleanup() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def device_name(device: torch.device) -> str:
    """A name that changes when the hardware does: GPU model and memory, or the device type."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name}/{props.total_memory // 2**20}MiB"
    return device.type
