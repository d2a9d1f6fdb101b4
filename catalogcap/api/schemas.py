"""Request and response bodies of the HTTP API (the OpenAPI document is generated from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from catalogcap.store.models import Adapter, Asset, Caption, Job

AssetState = Literal["queued", "captioned", "rejected"]
CaptionState = Literal["pending", "accepted", "edited", "rejected", "superseded"]
Kind = Literal["alt_text", "description"]
FINGERPRINT = r"^[0-9a-f]{64}$"
MAX_ID = 2**63 - 1  # SQLite's INTEGER


def check_text(value: Any) -> Any:
    """Lone surrogates survive JSON decoding but no database can store them."""
    if isinstance(value, str):
        value.encode("utf-8")
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
    return value


class JobOut(BaseModel):
    id: int
    state: Literal["pending", "running", "done", "failed"]
    attempts: int
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(id=job.id, state=job.state, attempts=job.attempts, last_error=job.last_error,
                   created_at=job.created_at, finished_at=job.finished_at)


class AssetOut(BaseModel):
    fingerprint: str = Field(description="sha256 of the image's bytes, hex; the image's id everywhere.")
    state: AssetState = Field(description="queued until captioned; rejected when it cannot be captioned.")
    size: int = Field(description="Bytes.")
    width: int | None
    height: int | None
    format: str | None = Field(description="JPEG, PNG, WEBP, TIFF, GIF, BMP or AVIF.")
    error: str | None = Field(description="Why the image was rejected, if it was.")
    missing: bool = Field(description="True when no file of this image is present any more (captions are kept).")
    job: JobOut | None = Field(description="The latest captioning job.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, asset: Asset, job: Job | None) -> AssetOut:
        return cls(fingerprint=asset.fingerprint, state=asset.state, size=asset.size, width=asset.width,
                   height=asset.height, format=asset.format, error=asset.error,
                   missing=asset.missing_since is not None, job=JobOut.of(job) if job else None,
                   created_at=asset.created_at, updated_at=asset.updated_at)


class CaptionOut(BaseModel):
    id: int
    fingerprint: str = Field(description="The image this caption describes.")
    kind: Kind
    text: str = Field(description="The current text: the model's, or the reviewer's correction.")
    model_text: str = Field(description="What the model wrote; never changed by a review.")
    state: CaptionState
    version: int = Field(description="Changes on every write; send it back in If-Match when reviewing.")
    model: str
    adapter: str | None = Field(description="The LoRA adapter that was active, if any.")
    reviewer: str | None
    reviewed_at: datetime | None
    reject_reason: str | None
    path: str | None = Field(description="A file of the image on the server, if one is present.")
    source: str | None = Field(None, description="Where human text that existed before catalogcap came from"
                               " (xmp, shopify, api...); null for the model's text.")
    context: dict[str, Any] = Field(default_factory=dict, description="The product context the caption was"
                                    " made with: fields used, template, prompt, sources.")
    warnings: list[dict[str, Any]] = Field(default_factory=list, description="Consistency warnings of the"
                                           " current text, each with a code (contradicts_color, missing_brand,"
                                           " too_long...) and a message.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, caption: Caption, fingerprint: str, path: str | None) -> CaptionOut:
        return cls(id=caption.id, fingerprint=fingerprint, kind=caption.kind, text=caption.text,
                   model_text=caption.model_text, state=caption.state, version=caption.version,
                   model=caption.model, adapter=caption.adapter_id, reviewer=caption.reviewer,
                   reviewed_at=caption.reviewed_at, reject_reason=caption.reject_reason, path=path,
                   source=caption.source, context=dict(caption.context or {}),
                   warnings=list(caption.warnings or []), created_at=caption.created_at,
                   updated_at=caption.updated_at)


class ImageCaptions(BaseModel):
    image: AssetOut
    captions: list[CaptionOut]


class CaptionPage(BaseModel):
    items: list[CaptionOut]
    next_cursor: str = Field(description="Pass as `cursor` for the next page; keep it to sync again later.")
    has_more: bool = Field(description="False on the last page available now.")


NO_NUL = r"^[^\x00]*$"
HAS_WORD = r"^[^\x00]*\w[^\x00]*$"  # some letter or digit, so it is not blank after trimming


class _Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reviewer: str | None = Field(None, min_length=1, max_length=128, pattern=NO_NUL,
                                 description="Who decided; default: the token's name.")

    _check = field_validator("*")(check_text)


class Accept(_Decision):
    decision: Literal["accept"]
    text: str | None = Field(None, max_length=5000, pattern=HAS_WORD,
                             description="Accept this text instead (then it counts as an edit); optional.")


class Edit(_Decision):
    decision: Literal["edit"]
    text: str = Field(max_length=5000, pattern=HAS_WORD, description="The corrected text.")


class Reject(_Decision):
    decision: Literal["reject"]
    reason: str | None = Field(None, max_length=1000, pattern=NO_NUL, description="Why (optional).")


ReviewIn = Annotated[Accept | Edit | Reject, Field(discriminator="decision")]


class AdapterOut(BaseModel):
    id: str
    base_model: str
    state: str = Field(description="candidate, active, retired, rejected or rolled_back.")
    metrics: dict[str, Any]
    parent_id: str | None
    created_at: datetime
    promoted_at: datetime | None
    retired_at: datetime | None

    @classmethod
    def of(cls, adapter: Adapter) -> AdapterOut:
        return cls(id=adapter.id, base_model=adapter.base_model, state=adapter.state, metrics=adapter.metrics,
                   parent_id=adapter.parent_id, created_at=adapter.created_at, promoted_at=adapter.promoted_at,
                   retired_at=adapter.retired_at)


class WorkerOut(BaseModel):
    running: bool = Field(description="Whether this server runs a captioning worker.")
    captioned: int = Field(description="Images this server's worker captioned since it started.")
    errors: int


class StatusOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    assets: int
    assets_by_state: dict[str, int]
    missing: int
    captions: dict[str, int]
    orphaned: int = Field(0, description="Pending captions whose image has no file left (out of review).")
    jobs: dict[str, int]
    adapter: str | None
    captions_per_minute: float
    model: str
    worker: WorkerOut


class Health(BaseModel):
    status: Literal["ok"]


MAX_PRODUCT_FIELDS = 100
MAX_FIELD_BYTES = 10 * 1024


class ProductIn(BaseModel):
    """Product data sent with an image (`POST /v1/images`, upload or path): stored as the image's
    "api" product row, which outranks sidecars, plugins and imports. `alt_text` is alt text a
    person wrote: it becomes the image's accepted alt text, never replaced by the model's."""

    model_config = ConfigDict(extra="forbid")
    sku: str | None = Field(None, min_length=1, max_length=256, description="The product's SKU.")
    title: str | None = Field(None, min_length=1, max_length=1000, description="The product's title.")
    brand: str | None = Field(None, min_length=1, max_length=256, description="The product's brand.")
    fields: dict[str, str] = Field(
        default_factory=dict, max_length=MAX_PRODUCT_FIELDS,
        description="Any other fields (at most 100; values up to 10 KB of text), e.g. {\"color\": \"red\"}; names"
        " are stored as lower snake_case (\"Colour\" means color).")
    alt_text: str | None = Field(None, min_length=1, max_length=1000,
                                 description="Human alt text (at most the store's alt_text_limit characters).")
    source_name: str | None = Field(
        None, min_length=1, max_length=255, pattern=r"^[^/\\]+$",
        description="The client's own file name for the image (a name, not a path), for export matching.")

    @field_validator("sku", "title", "brand", "alt_text", "source_name")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        check_text(value)
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("source_name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and value.strip() in (".", ".."):
            raise ValueError("must be a file name")
        return value

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, str]) -> dict[str, str]:
        from catalogcap.products.importer import field_name

        for key, text in value.items():
            check_text(key)
            check_text(text)
            if not field_name(key) or len(key) > 128:
                raise ValueError(f"field name {key[:40]!r} needs letters or digits (at most 128 characters)")
            if len(text.encode("utf-8")) > MAX_FIELD_BYTES:
                raise ValueError(f"field {key[:40]!r} is over {MAX_FIELD_BYTES:,} bytes")
        return value

    def has_product(self) -> bool:
        return any((self.sku, self.title, self.brand, self.fields, self.alt_text))
