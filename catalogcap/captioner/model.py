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
from collections.abc import Callable
from dataclasses import dataclass, replace
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


def quiet_hub() -> None:
    """No progress bars or retry warnings from huggingface_hub: our one error line says it all."""
    from huggingface_hub.utils import disable_progress_bars
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()
    disable_progress_bars()
    for name in ("httpx", "httpx2", "httpcore", "httpcore2", "urllib3", "filelock"):  # one INFO line per request
        logging.getLogger(name).setLevel(logging.WARNING)


def quiet_transformers() -> None:
    """No download progress bars or torchvision-fallback notices in a CLI or daemon."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    quiet_hub()


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


# What a saved BLIP needs to caption: each entry is satisfied by any one of its file names.
MODEL_FILES: dict[str, tuple[str, ...]] = {
    "config (config.json)": ("config.json",),
    "safetensors weights (*.safetensors)": ("*.safetensors",),
    "tokenizer (tokenizer.json or vocab.txt)": ("tokenizer.json", "vocab.txt"),
    "processor config (preprocessor_config.json or processor_config.json)":
        ("preprocessor_config.json", "processor_config.json"),
}
HUB_PATTERNS = ["*.json", "*.safetensors", "vocab.txt", "*.model", "*.txt"]
HUB_TIMEOUT = 5.0
_resolved: dict[tuple[str, str | None], Path] = {}


def offline_hint(model_id: str) -> str:
    return (f"download it on a connected machine (`hf download {model_id} --local-dir blip-model`), copy that"
            " folder here and set CATALOGCAP_MODEL=/path/to/blip-model (README: \"Offline machines\")")


def looks_local(model_id: str) -> bool:
    """A path, not a hub id: absolute, ./ ~ relative, or an existing folder of that name."""
    path = Path(model_id).expanduser()
    return path.is_absolute() or model_id.startswith((".", "~")) or path.exists()


def check_model_folder(path: Path, what: str = "model folder") -> Path:
    """`path` if it holds everything `load_model` reads; else `ModelLoadError` naming what is missing."""
    if not path.is_dir():
        raise ModelLoadError(f"{what} {path} does not exist (set CATALOGCAP_MODEL to a saved BLIP model folder)")
    missing = [label for label, names in MODEL_FILES.items()
               if not any(match.is_file() for name in names for match in path.glob(name))]
    if missing:
        pickled = "safetensors weights (*.safetensors)" in missing and any(path.glob("*.bin"))
        extra = (" (it has pickled .bin weights, which catalogcap never loads: convert with"
                 " `save_pretrained(..., safe_serialization=True)`)") if pickled else ""
        raise ModelLoadError(f"{what} {path} is not a complete BLIP model: missing {', '.join(missing)}{extra}")
    return path


def resolve_model(model_id: str, revision: str | None = None, *, timeout: float = HUB_TIMEOUT) -> Path:
    """The local folder to load `model_id` from, checked, before any work starts.

    A local folder is checked for the files it needs. A hub id is looked up once, with
    `timeout`, then downloaded (only the files BLIP needs) into the Hugging Face cache; when
    the hub cannot be reached a complete cached copy is used, and without one the error is a
    single line saying what to do. Nothing is retried. Results are remembered per process.
    """
    key = (model_id, revision)
    if key in _resolved:
        return _resolved[key]
    if looks_local(model_id):
        path = check_model_folder(Path(model_id).expanduser().absolute())
    else:
        path = _resolve_hub(model_id, revision, timeout)
    _resolved[key] = path
    return path


def _cached_snapshot(model_id: str, revision: str | None) -> Path | None:
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(model_id, revision=revision, local_files_only=True,
                                      allow_patterns=HUB_PATTERNS))
        return check_model_folder(path, "cached model")
    except (OSError, ValueError, ModelLoadError):
        return None


def _resolve_hub(model_id: str, revision: str | None, timeout: float) -> Path:
    quiet_hub()
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    cached = _cached_snapshot(model_id, revision)
    if constants.HF_HUB_OFFLINE:
        if cached is not None:
            return cached
        raise ModelLoadError(f"model {model_id!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1"
                             f" forbids downloading it: {offline_hint(model_id)}")
    try:
        _within(timeout, lambda: HfApi().model_info(model_id, revision=revision, timeout=timeout))
    except GatedRepoError:
        raise ModelLoadError(f"model {model_id!r} is gated on the Hugging Face hub: accept its terms there and"
                             " set HF_TOKEN, or set CATALOGCAP_MODEL to a local copy") from None
    except RevisionNotFoundError:
        raise ModelLoadError(f"model {model_id!r} has no revision {revision!r} on the Hugging Face hub;"
                             " fix model_revision") from None
    except RepositoryNotFoundError:
        raise ModelLoadError(f"no model {model_id!r} on the Hugging Face hub (a typo, or a private model"
                             " without HF_TOKEN?); set CATALOGCAP_MODEL to a hub id or a local folder") from None
    except HfHubHTTPError as exc:
        if cached is not None:
            log.info("the Hugging Face hub answered %s; using the cached copy of %s", exc, model_id)
            return cached
        raise ModelLoadError(f"cannot look up model {model_id!r} on the Hugging Face hub"
                             f" ({_first_line(exc)}): {offline_hint(model_id)}") from None
    except Exception as exc:  # no network, DNS, proxy, timeout: one try only
        if cached is not None:
            log.info("the Hugging Face hub is unreachable (%s); using the cached copy of %s", _first_line(exc),
                     model_id)
            return cached
        raise ModelLoadError(f"cannot reach the Hugging Face hub ({constants.ENDPOINT}) to get model {model_id!r}"
                             f" ({type(exc).__name__}: {_first_line(exc)}); no network? {offline_hint(model_id)}"
                             ) from None
    try:
        path = Path(snapshot_download(model_id, revision=revision, allow_patterns=HUB_PATTERNS,
                                      etag_timeout=timeout))
    except Exception as exc:
        raise ModelLoadError(f"downloading model {model_id!r} failed ({type(exc).__name__}: {_first_line(exc)});"
                             f" {offline_hint(model_id)}") from None
    return check_model_folder(path, f"downloaded model {model_id!r} in")


def _within(seconds: float, call: Callable[[], Any]) -> Any:
    """`call()` in a daemon thread, given up after `seconds` (+1): a resolver with no DNS server
    can block in getaddrinfo longer than any socket timeout."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the caller's thread below
            outcome.append((False, exc))

    worker = threading.Thread(target=run, name="catalogcap-hub-lookup", daemon=True)
    worker.start()
    worker.join(seconds + 1.0)
    if not outcome:
        raise TimeoutError(f"no answer within {seconds:.0f} s")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
    source = str(resolve_model(model_id, revision))  # a checked local folder: nothing below goes online
    quiet_transformers()
    from transformers import BlipForConditionalGeneration, BlipProcessor

    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    common = {"trust_remote_code": False, "local_files_only": True}
    try:
        processor = BlipProcessor.from_pretrained(source, **common)
        model = BlipForConditionalGeneration.from_pretrained(
            source, use_safetensors=True, dtype=torch_dtype, **common
        )
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load captioning model {model_id!r} from {source}: {type(exc).__name__}:"
                             f" {_first_line(exc)}") from None
    if adapter_dir is not None:
        model = merge_adapter(model, adapter_dir)
    model.to(torch_device)
    model.eval()
    state = None
    if engine is not None:
        from catalogcap.captioner.engine import apply_engine

        model, state = apply_engine(model, engine, torch_device, torch_dtype, inplace=True)
    return LoadedModel(model, processor, model_id, adapter_id, torch_device, torch_dtype, state)


def ensure_engine(loaded: LoadedModel, engine: EngineSettings) -> LoadedModel:
    """`loaded` itself when it already runs as `engine` asks, else a copy with what is missing applied."""
    from catalogcap.captioner.engine import EngineError, EngineState, apply_engine

    wanted = EngineState.wanted(engine, loaded.device, loaded.dtype)
    have = loaded.engine or EngineState()
    if loaded.engine == wanted:
        return loaded
    if (have.int8 and not wanted.int8) or (have.compile and not wanted.compile):
        raise EngineError("this model was quantized or compiled at load; load it again with these engine settings")
    missing = engine.model_copy(update={"int8": wanted.int8 and not have.int8,
                                        "compile": wanted.compile and not have.compile})
    model, _ = apply_engine(loaded.model, missing, loaded.device, loaded.dtype)
    return replace(loaded, model=model, engine=wanted)


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
