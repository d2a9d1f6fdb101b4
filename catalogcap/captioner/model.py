"""Loading the BLIP captioner: a hub id or a local folder, safetensors only, never remote code.

The model is loaded once per process (see `get_model`); the active LoRA adapter, if any,
is merged into the weights for inference so captioning costs the same as the base, and
the engine settings (SDPA, int8, compile) are applied once, at load.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catalogcap.errors import ModelLoadError

if TYPE_CHECKING:
    from catalogcap.captioner.engine import EngineState
    from catalogcap.settings import EngineSettings

log = logging.getLogger(__name__)
_cache: dict[tuple, Any] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class LoadedModel:
    model: Any  # BlipForConditionalGeneration
    processor: Any  # BlipProcessor
    model_id: str
    adapter_id: str | None
    device: Any  # torch.device
    dtype: Any  # torch.dtype
    engine: EngineState | None = None  # None: loaded as transformers made it


def quiet_transformers() -> None:
    """No download progress bars or torchvision-fallback notices in a CLI or daemon."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def pick_device(requested: str = "auto"):
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was requested but torch sees no CUDA GPU; use device=auto or cpu")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelLoadError("device 'mps' was requested but this torch has no MPS support; use auto or cpu")
    return torch.device(requested)


def pick_dtype(requested: str, device):
    import torch

    if requested == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    dtype = getattr(torch, requested)
    if device.type == "cpu" and dtype == torch.float16:
        raise ModelLoadError("dtype float16 is not supported on CPU; use float32 or bfloat16")
    return dtype


def _check_local(model_id: str) -> None:
    path = Path(model_id).expanduser()
    looks_local = path.is_absolute() or model_id.startswith((".", "~")) or path.exists()
    if not looks_local:
        return
    if not path.is_dir():
        raise ModelLoadError(f"model folder {path} does not exist")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"model folder {path} has no config.json; is it a saved BLIP model?")
    if not any(path.glob("*.safetensors")):
        raise ModelLoadError(
            f"model folder {path} has no .safetensors weights; catalogcap never loads pickled weights"
            " (convert with `save_pretrained(..., safe_serialization=True)`)"
        )


def load_model(
    model_id: str,
    *,
    revision: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    adapter_dir: Path | None = None,
    adapter_id: str | None = None,
    engine: EngineSettings | None = None,
) -> LoadedModel:
    """Load BLIP and its processor (merge a LoRA adapter, apply `engine`), ready for inference."""
    quiet_transformers()
    from transformers import BlipForConditionalGeneration, BlipProcessor

    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    _check_local(model_id)
    local = Path(model_id).expanduser()
    source = str(local) if local.is_dir() else model_id
    common = {"revision": revision, "trust_remote_code": False}
    try:
        processor = BlipProcessor.from_pretrained(source, **common)
        model = BlipForConditionalGeneration.from_pretrained(
            source, use_safetensors=True, dtype=torch_dtype, **common
        )
    except ModelLoadError:
        raise
    except Exception as exc:
        hint = ""
        if os.environ.get("HF_HUB_OFFLINE") == "1" or "offline" in str(exc).lower() or "connect" in str(exc).lower():
            hint = " (no network or HF_HUB_OFFLINE=1: point CATALOGCAP_MODEL at a local copy)"
        raise ModelLoadError(f"cannot load captioning model {model_id!r}: {type(exc).__name__}: {exc}{hint}") from None
    if adapter_dir is not None:
        model = merge_adapter(model, adapter_dir)
    model.to(torch_device)
    model.eval()
    state = None
    if engine is not None:
        from catalogcap.captioner.engine import apply_engine

        model, state = apply_engine(model, engine, torch_device, torch_dtype, inplace=True)
    return LoadedModel(model, processor, model_id, adapter_id, torch_device, torch_dtype, state)


def merge_adapter(model: Any, adapter_dir: Path) -> Any:
    """Apply a peft LoRA adapter (safetensors only) and merge it into the weights."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_model.safetensors").is_file():
        raise ModelLoadError(f"adapter folder {adapter_dir} has no adapter_model.safetensors")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # transformers' gradient-checkpointing rename
            peft_model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
    except Exception as exc:
        raise ModelLoadError(f"cannot load adapter {adapter_dir}: {type(exc).__name__}: {exc}") from None
    return peft_model.merge_and_unload()


def get_model(**kwargs: Any) -> LoadedModel:
    """`load_model` once per process per (model, adapter, device, dtype, engine)."""
    key = tuple(sorted((k, str(v)) for k, v in kwargs.items()))
    with _cache_lock:
        if key not in _cache:
            if len(_cache) >= 2:  # the previous adapter's copy is no longer needed
                _cache.pop(next(iter(_cache)))
            _cache[key] = load_model(**kwargs)
        return _cache[key]
