"""The one Settings class: defaults < $CATALOGCAP_HOME/catalogcap.toml < CATALOGCAP_* env < CLI options."""

from __future__ import annotations

import contextvars
import os
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from catalogcap import redact
from catalogcap.errors import SettingsError
from catalogcap.products.prompts import check_template

CONFIG_NAME = "catalogcap.toml"
ENV_PREFIX = "CATALOGCAP_"
DEFAULT_MODEL = "Salesforce/blip-image-captioning-base"
KINDS = ("alt_text", "description")

_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar("catalogcap_config_file", default=None)


def default_home() -> Path:
    """The data folder used when neither CATALOGCAP_HOME nor --home names one."""
    return Path(platformdirs.user_data_dir("catalogcap", appauthor=False))


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class GenerationSettings(Section):
    prompt: str = Field("", description="Text the caption continues from; stripped from the output.")
    max_new_tokens: int = Field(30, ge=1, le=512, description="Most tokens generated after the prompt.")
    min_new_tokens: int = Field(0, ge=0, le=256, description="Fewest tokens generated after the prompt.")
    num_beams: int = Field(3, ge=1, le=16, description="Beam width; 1 is greedy decoding.")
    repetition_penalty: float = Field(1.0, ge=1.0, le=3.0, description="Penalty on tokens already generated.")
    no_repeat_ngram_size: int = Field(3, ge=0, le=10, description="Never repeat an n-gram of this size (0: off).")
    length_penalty: float = Field(1.0, ge=-2.0, le=5.0, description="Beam-search length penalty (>1 favours longer).")

    @field_validator("prompt")
    @classmethod
    def _template(cls, value: str) -> str:
        # only plain {name} fields of the product context: see catalogcap/products/prompts.py
        return check_template(value)


class DescriptionSettings(GenerationSettings):
    prompt: str = Field("a product photo of", description="Text the description continues from; stripped.")
    max_new_tokens: int = Field(60, ge=1, le=512, description="Most tokens generated after the prompt.")
    min_new_tokens: int = Field(
        0, ge=0, le=256,
        description="Fewest tokens generated after the prompt; forcing length makes a model that learnt a short"
        " house style run on past its end and name wrong facts.",
    )
    num_beams: int = Field(4, ge=1, le=16, description="Beam width; 1 is greedy decoding.")
    repetition_penalty: float = Field(1.3, ge=1.0, le=3.0, description="Penalty on tokens already generated.")


class Generation(Section):
    alt_text: GenerationSettings = Field(
        default_factory=GenerationSettings, description="Short alt text: unprompted, small beam, short budget."
    )
    description: DescriptionSettings = Field(
        default_factory=DescriptionSettings,
        description="Longer product description: prompted, wider beam, repetition penalty.",
    )

    def for_kind(self, kind: str) -> GenerationSettings:
        return getattr(self, kind)


class WatchSettings(Section):
    folders: list[Path] = Field(default_factory=list, description="Folders `catalogcap watch` watches by default.")
    include: list[str] = Field(
        default_factory=lambda: ["*.jpg", "*.jpeg", "*.jpe", "*.png", "*.webp", "*.tif", "*.tiff",
                                 "*.gif", "*.bmp", "*.avif"],
        description="File-name globs (case-insensitive) that count as product images.",
    )
    ignore: list[str] = Field(
        default_factory=lambda: [".*", "*.part", "*.crdownload", "*.download", "*.tmp", "~$*", "*~"],
        description="File-name globs never taken: temporary names of rsync, browsers and editors, hidden files.",
    )
    quiet_seconds: float = Field(
        2.0, ge=0.0, le=3600.0, description="A file is taken once its size and mtime are unchanged this long."
    )
    incomplete_seconds: float = Field(
        60.0, ge=0.0, le=86400.0,
        description="A settled file that looks cut off (an image still being written) is not taken: it is"
        " checked again after a longer quiet period (4x quiet_seconds, at least 2 s) and on its next change,"
        " and taken as it is (then rejected if broken) once its size and mtime stayed unchanged this long.",
    )
    polling: bool = Field(False, description="Use watchdog's polling observer (network shares without inotify).")
    poll_interval: float = Field(2.0, gt=0.0, le=600.0, description="Seconds between polls in polling mode.")


class QueueSettings(Section):
    max_attempts: int = Field(5, ge=1, le=100, description="Attempts before a failing job is quarantined.")
    retry_backoff_seconds: float = Field(
        30.0, ge=0.0, le=86400.0, description="Wait before the first retry; doubles with each attempt."
    )
    retry_backoff_max_seconds: float = Field(3600.0, ge=0.0, le=604800.0, description="Longest wait between retries.")
    lease_seconds: float = Field(
        900.0, ge=5.0, le=86400.0,
        description="Lease on a claimed job, renewed every third of it while the worker works;"
        " a job whose worker stopped renewing it is taken over after this."
    )
    max_wait_seconds: float = Field(
        1.0, ge=0.0, le=600.0, description="How long a worker waits for a batch to fill before captioning it."
    )
    read_ahead: bool = Field(
        True, description="While the model captions a batch, claim the next one (when jobs wait) and read its"
        " images, so decoding never stalls the model; off: claim, read and caption one batch at a time."
    )


class EngineSettings(Section):
    sdpa: bool = Field(
        True, description="Compute BLIP attention with PyTorch's fused SDPA kernel (equal to eager within 1e-5)."
    )
    fast_decode: bool = Field(
        True,
        description="Read images for the model in JPEG draft mode, reduce, resize and normalise in torch"
        " (close to BlipImageProcessor, several times faster); off: full decode + BlipImageProcessor.",
    )
    reducing_gap: float = Field(
        2.0, ge=1.0, le=8.0,
        description="Fast decode shrinks a picture (JPEG draft, integer reduce) only down to this many times"
        " the model's input size before the bicubic resize: 1 fastest, 3 closest to a full decode.",
    )
    int8: bool = Field(
        False,
        description="On CPU, dynamic int8 quantization of the Linear layers: ~2x faster, captions may differ"
        " slightly (see benchmarks/README.md for agreement); ignored on GPUs.",
    )
    compile: bool = Field(
        False, description="torch.compile the vision encoder (minutes of warm-up; worth it for long GPU runs)."
    )
    max_batch: int = Field(
        0, ge=0, le=65536,
        description="Most images per model call; 0: on CUDA the largest batch that fits (probed once,"
        " remembered in home/engine.json), elsewhere 32.",
    )
    decode_threads: int = Field(
        0, ge=0, le=256, description="Threads decoding images while the model runs; 0: one per core, at most 8."
    )
    threads: int = Field(
        0, ge=0, le=1024, description="Torch CPU threads for the model; 0: torch's default (one per core)."
    )
    reuse_memory: bool = Field(
        True,
        description="On CPU (Linux/glibc), keep freed memory in the process so large batches do not page-fault"
        " their activations in again on every layer (~10% faster; the process keeps its peak memory).",
    )


class TrainingSettings(Section):
    schedule: str = Field("0 2 * * *", description="Cron schedule of the daemon's training round (local time).")
    min_new_corrections: int = Field(
        50, ge=0, description="Reviewed captions needed since the last round before a new one is worth it."
    )
    val_percent: float = Field(
        20.0, gt=0, lt=100, description="Share of images held out for evaluation (chosen stably by fingerprint)."
    )
    target_modules: list[str] = Field(
        default_factory=lambda: ["query", "value"],
        description="LoRA targets (module-name suffixes): text decoder self- and cross-attention;"
        " \"attention.self.query\", \"attention.self.value\" for self-attention only; add \"qkv\" for the"
        " vision encoder.",
    )
    rank: int = Field(16, ge=1, le=256, description="LoRA rank.")
    alpha: float = Field(32.0, gt=0, description="LoRA alpha (scale = alpha / rank).")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    lr: float | None = Field(
        None, gt=0, le=1,
        description="Peak learning rate (AdamW, linear warm-up and decay); unset: each of lr_candidates is"
        " tried and the one whose best checkpoint scores highest on the dev split wins.",
    )
    lr_candidates: list[float] = Field(
        default_factory=lambda: [3e-4, 1e-3, 3e-3], min_length=1, max_length=8,
        description="Learning rates searched when training.lr is unset.",
    )
    epochs: int | None = Field(
        None, ge=1, le=1000,
        description="Passes over the training set; unset: the step budget decides (see min_steps, max_steps).",
    )
    min_steps: int = Field(
        400, ge=1, description="Fewest optimizer steps of a round when epochs and max_steps are unset."
    )
    epochs_budget: float = Field(
        20.0, gt=0, le=1000,
        description="Passes over the data a round aims for when epochs is unset (small sets: min_steps wins).",
    )
    max_auto_steps: int = Field(
        4000, ge=1, description="Most optimizer steps of a round when epochs and max_steps are unset."
    )
    max_steps: int = Field(0, ge=0, description="Exactly this many optimizer steps (0: the budget decides).")
    evals_per_run: int = Field(
        8, ge=1, le=200,
        description="Checkpoints scored on the dev split per learning rate; the best one is kept.",
    )
    patience: int = Field(
        3, ge=1, le=100, description="Stop a learning rate after this many dev scores without improvement."
    )
    dev_percent: float = Field(
        15.0, gt=0, lt=100,
        description="Share of training images held back to choose the learning rate and checkpoint"
        " (never the gate's held-out set, so the gate stays unbiased).",
    )
    max_dev_images: int = Field(96, ge=4, description="Most dev images (scoring them costs generation time).")
    max_minutes: float = Field(
        120.0, gt=0, le=10080,
        description="Time budget of a whole round; the search stops early to leave time for the gate.",
    )
    batch_size: int = Field(16, ge=1, le=4096, description="Examples per optimizer micro-batch.")
    processes: int = Field(
        1, ge=0, le=256,
        description="Data-parallel training processes (accelerate; NCCL on GPUs, gloo on CPU), each on its share"
        " of every micro-batch, so the round trains the same as in one process; 0: one per GPU.",
    )
    grad_accum: int = Field(1, ge=1, le=1024, description="Micro-batches per optimizer step.")
    embed_cache_gb: float = Field(
        20.0, ge=0,
        description="Disk (GiB, under the run folder) for caching the frozen vision encoder's outputs;"
        " a larger training set is encoded again at every step instead. Memory stays one batch either way.",
    )
    seed: int = Field(42, description="Seed for shuffling, dropout and init: same data + seed, same adapter.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory on CUDA.")
    gate_metric: Literal["CIDEr", "BLEU-4", "METEOR", "ROUGE-L"] = Field(
        "CIDEr", description="Metric a candidate must improve to be promoted."
    )
    gate_margin: float = Field(
        0.01, ge=0,
        description="Least improvement (absolute) of the gate metric; the lower end of gate_interval must clear it.",
    )
    gate_confidence: float = Field(
        0.9, gt=0.5, lt=1.0,
        description="Coverage of the bootstrap interval of the gate difference (over held-out images).",
    )
    min_val_images: int = Field(
        20, ge=1,
        description="Fewest held-out images a round needs to decide anything; below it nothing is trained"
        " (--force does not lower it).",
    )
    fact_error_tolerance: float = Field(
        0.1, ge=0, le=1,
        description="How much larger the candidate's share of wrong facts (of those it states) may be than the"
        " active's (held-out sets of ~50 images measure it to about ±0.05).",
    )
    fact_recall_tolerance: float = Field(
        0.1, ge=0, le=1, description="How much lower the candidate's fact recall may be than the active's."
    )
    eval_kinds: list[Literal["alt_text", "description"]] = Field(
        default_factory=lambda: ["alt_text", "description"], description="Caption kinds trained and evaluated."
    )


class ApiSettings(Section):
    host: str = Field(
        "127.0.0.1", min_length=1,
        description="Address `catalogcap serve` binds to; keep loopback unless TLS is in front.",
    )
    port: int = Field(8765, ge=1, le=65535, description="Port `catalogcap serve` listens on.")
    worker: bool = Field(
        True, description="Run a captioning worker inside `catalogcap serve` (off when `watch` captions)."
    )
    roots: list[Path] = Field(
        default_factory=list,
        description="Folders whose images clients may register by server path; empty turns that off.",
    )
    upload_folder: str = Field(
        "uploads", min_length=1, description="Folder under home where uploads are kept, named by sha256."
    )
    max_upload_mb: float = Field(50.0, gt=0, le=4096, description="Largest upload (MiB); bigger gets 413.")
    max_upload_pixels: int = Field(
        100_000_000, ge=1, description="Uploaded or registered images with more pixels than this get 413."
    )
    max_wait_seconds: float = Field(
        60.0, ge=0, le=600, description="Longest long-poll (`?wait=`) a client may ask for."
    )
    page_size: int = Field(100, ge=1, le=1000, description="Captions per page when a client gives no limit.")
    public_docs: bool = Field(
        True, description="Serve /docs and /openapi.json without a token (they describe, hold no data)."
    )

    @field_validator("upload_folder")
    @classmethod
    def _inside_home(cls, value: str) -> str:
        if Path(value).is_absolute() or ".." in Path(value).parts:
            raise ValueError("must be a relative folder name inside home, without '..'")
        return value

    @field_validator("roots", mode="after")
    @classmethod
    def _absolute_roots(cls, value: list[Path]) -> list[Path]:
        return [root.expanduser().absolute() for root in value]


class Profile(Section):
    """A [[profiles]] entry: generation settings for the images of some folders."""

    name: str = Field(min_length=1, description="Name stored with each caption it made.")
    folders: list[str] = Field(
        min_length=1,
        description="Globs matched against the image's path: `**` any folders, `*` and `?` within one name;"
        " a pattern not starting with / matches the end of the path (\"**/shoes/*\" or \"/catalog/furniture/**\").",
    )
    generation: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Overrides of generation.<kind> settings (prompt, max_new_tokens, ...)."
    )
    alt_text_limit: int | None = Field(None, ge=16, le=1000, description="Override of alt_text_limit.")

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("each [[profiles]] entry must be a table with name, folders and overrides")
        name = data.get("name")
        label = f"profile {name!r}" if name else "a profile without a name"
        known = set(cls.model_fields)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{label}: unknown key(s) {', '.join(unknown)}; a profile has {', '.join(sorted(known))}")
        if isinstance(data.get("folders"), str):
            data = {**data, "folders": [data["folders"]]}
        generation = data.get("generation") or {}
        if not isinstance(generation, dict):
            raise ValueError(f"{label}: generation must be a table of kinds ({', '.join(KINDS)})")
        for kind, overrides in generation.items():
            if kind not in KINDS:
                raise ValueError(f"{label}: unknown caption kind generation.{kind}; use {', '.join(KINDS)}")
            model = DescriptionSettings if kind == "description" else GenerationSettings
            if not isinstance(overrides, dict):
                raise ValueError(f"{label}: generation.{kind} must be a table of settings")
            bad = sorted(set(overrides) - set(model.model_fields))
            if bad:
                raise ValueError(f"{label}: unknown setting(s) generation.{kind}.{', '.join(bad)}; known:"
                                 f" {', '.join(model.model_fields)}")
            try:
                model.model_validate(overrides)
            except ValidationError as exc:
                problems = "; ".join(f"generation.{kind}.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                     for e in exc.errors())
                raise ValueError(f"{label}: {problems}") from None
        return data

    def matches(self, path: str | Path) -> bool:
        from catalogcap.products.prompts import folder_matches

        return folder_matches(self.folders, path)


class Settings(BaseSettings):
    """Everything catalogcap can be told; `catalogcap config show` prints it with sources."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    home: Path = Field(
        default_factory=default_home, description="Data folder: database, adapters, logs, config file."
    )
    model: str = Field(
        DEFAULT_MODEL, min_length=1, description="BLIP captioning model: a hub id or a local directory."
    )
    model_revision: str | None = Field(None, description="Hub revision (tag or commit) to pin the model to.")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="Where the model runs.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Model precision; auto is bfloat16 on CUDA and float32 elsewhere."
    )
    batch_size: int = Field(8, ge=1, le=4096, description="Images captioned per model call.")
    alt_text_limit: int = Field(125, ge=16, le=1000, description="Longest alt text in characters.")
    max_pixels: int = Field(
        180_000_000, ge=1, description="Images with more pixels are refused as decompression bombs."
    )
    max_file_mb: float = Field(200.0, gt=0, description="Image files larger than this (MiB) are refused.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the store; default: SQLite file catalogcap.db in home."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log verbosity.")
    log_format: Literal["text", "json"] = Field("text", description="Log line format: text or one JSON per line.")
    generation: Generation = Field(default_factory=Generation, description="Generation settings per caption kind.")
    watch: WatchSettings = Field(default_factory=WatchSettings, description="The watch daemon.")
    queue: QueueSettings = Field(default_factory=QueueSettings, description="The captioning job queue.")
    engine: EngineSettings = Field(
        default_factory=EngineSettings, description="Captioning speed: attention kernel, decoding, int8, batching."
    )
    api: ApiSettings = Field(default_factory=ApiSettings, description="The HTTP API (catalogcap serve).")
    training: TrainingSettings = Field(default_factory=TrainingSettings, description="Nightly LoRA training.")

    profiles: list[Profile] = Field(
        default_factory=list,
        description="Per-folder generation settings ([[profiles]] tables: name, folders, generation.<kind>.*,"
        " alt_text_limit); the first whose folders match an image's path wins.",
    )
    plugins: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Plugins allowed to load (names or globs; [] loads none, not even the built-ins).",
    )
    plugin_config: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-plugin settings, e.g. [plugin_config.xmp] mode = \"sidecar\"."
    )

    _provenance: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator("profiles", mode="after")
    @classmethod
    def _unique_profiles(cls, value: list[Profile]) -> list[Profile]:
        seen: set[str] = set()
        for profile in value:
            if profile.name in seen:
                raise ValueError(f"two profiles are named {profile.name!r}; profile names must be unique")
            seen.add(profile.name)
        return value

    def profile_for(self, path: str | Path | None) -> Profile | None:
        """The first profile whose folders match `path`, or None (the top-level settings)."""
        if path is None:
            return None
        return next((p for p in self.profiles if p.matches(path)), None)

    def for_profile(self, profile: Profile | str | None) -> Settings:
        """These settings with a profile's overrides applied (itself for None)."""
        if profile is None:
            return self
        if isinstance(profile, str):
            profile = next(p for p in self.profiles if p.name == profile)
        kinds: dict[str, GenerationSettings] = {}
        for kind in KINDS:
            base = self.generation.for_kind(kind)
            kinds[kind] = type(base).model_validate({**base.model_dump(), **profile.generation.get(kind, {})})
        return self.model_copy(update={"generation": Generation(**kinds),
                                       "alt_text_limit": profile.alt_text_limit or self.alt_text_limit})

    @property
    def config_file(self) -> Path:
        return self.home / CONFIG_NAME

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'catalogcap.db'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = nested
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def _resolve_home(cli: dict[str, Any]) -> Path:
    raw = cli.get("home") or os.environ.get(f"{ENV_PREFIX}HOME")
    return Path(raw).expanduser().absolute() if raw else default_home()


def _read_config_layer(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return TomlConfigSettingsSource(Settings, toml_file=path)()
    except Exception as exc:  # tomllib raises TOMLDecodeError with line and column
        raise SettingsError(f"cannot read config file {path}: {exc}") from exc


def _describe(error: dict[str, Any], layers: list[tuple[str, dict[str, Any]]]) -> str:
    loc = ".".join(str(part) for part in error["loc"])
    origin = _origin(loc, layers)
    if error["type"] == "extra_forbidden":
        return f"unknown setting '{loc}' (from {origin}); `catalogcap config show` lists the known ones"
    return f"setting '{loc}' has bad value {redact.value(loc, error['input'])!r} (from {origin}): {error['msg']}"


def _origin(dotted: str, layers: list[tuple[str, dict[str, Any]]]) -> str:
    parts = dotted.split(".")
    for label, flat in reversed(layers):
        for n in range(len(parts), 0, -1):
            key = ".".join(parts[:n])
            if key in flat:
                return f"env {ENV_PREFIX}{key.upper().replace('.', '__')}" if label == "env" else label
    return "default"


def load_settings(cli: dict[str, Any] | None = None) -> Settings:
    """Build the effective settings; `cli` holds dotted keys given on the command line."""
    cli = {key: value for key, value in (cli or {}).items() if value is not None}
    home = _resolve_home(cli)
    config_path = home / CONFIG_NAME
    file_layer = _read_config_layer(config_path)
    env_layer = EnvSettingsSource(Settings)()
    layers = [
        (f"file {config_path}", _flatten(file_layer)),
        ("env", _flatten(env_layer)),
        ("command line", dict(cli)),
    ]
    token = _config_file.set(config_path)
    try:
        settings = Settings(**_nest(cli))
    except ValidationError as exc:
        messages = [_describe(error, layers) for error in exc.errors()]
        raise SettingsError("; ".join(messages)) from None
    finally:
        _config_file.reset(token)
    settings._provenance = {key: _origin(key, layers) for key in _flatten(settings.model_dump())}
    return settings


def provenance(settings: Settings) -> dict[str, str]:
    """Where each effective value came from: default, the config file, the environment or the command line."""
    return dict(settings._provenance)


def field_docs(model: type[BaseModel] = Settings, prefix: str = "") -> dict[str, str]:
    """Dotted setting name -> its description, for docs, `config show` and the config template."""
    docs: dict[str, str] = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            docs.update(field_docs(annotation, f"{prefix}{name}."))
        else:
            docs[f"{prefix}{name}"] = info.description or ""
    return docs
