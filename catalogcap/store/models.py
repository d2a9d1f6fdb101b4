"""Tables of the catalog store. The schema itself is owned by the alembic migrations in
`catalogcap/store/migrations`; `tests/test_store.py` checks these models against them."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

ASSET_STATES = ("queued", "captioned", "rejected")
CAPTION_STATES = ("pending", "accepted", "edited", "rejected", "superseded")
# `superseded`: a pending caption of bytes a file no longer holds (kept for history, out of review
# and exports). A caption whose image has no live path keeps its state; readers leave it out.
PRODUCT_FIELDS = ("title", "brand", "category", "sku", "color", "material")  # named columns of `products`
JOB_STATES = ("pending", "running", "done", "failed")
KINDS = ("alt_text", "description")
# indexes a migration makes on one backend only, not on the models: name -> dialect
DIALECT_INDEXES = {"ix_asset_paths_path_pattern": "postgresql"}  # 0010: LIKE 'folder/%' under any collation


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        return value.astimezone(timezone.utc).replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _ts(nullable: bool = False, **kw: Any) -> Any:
    if nullable:
        return Field(default=None, sa_type=UTCDateTime, nullable=True, **kw)
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, **kw)


class Asset(SQLModel, table=True):
    """One distinct image, keyed by the sha256 of its bytes as last seen and by its picture's
    `content_id`; paths live in AssetPath."""

    __tablename__ = "assets"
    id: int | None = Field(default=None, primary_key=True)
    fingerprint: str = Field(max_length=64, unique=True, index=True)
    # sha256 of the picture without its metadata (catalogcap.fingerprint.content_id): a metadata-only
    # rewrite of the file (exiftool, an XMP embed) keeps the asset; None until computed (see 0004)
    content_id: str | None = Field(default=None, max_length=64, index=True)
    size: int
    width: int | None = None
    height: int | None = None
    format: str | None = Field(default=None, max_length=16)
    state: str = Field(default="queued", max_length=16, index=True)
    error: str | None = None
    missing_since: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class AssetPath(SQLModel, table=True):
    """Where an asset's bytes were last seen; several paths may share one asset."""

    __tablename__ = "asset_paths"
    id: int | None = Field(default=None, primary_key=True)
    asset_id: int = Field(foreign_key="assets.id", index=True, ondelete="CASCADE")
    path: str = Field(unique=True, index=True)
    size: int
    mtime_ns: int = Field(sa_type=sa.BigInteger)
    missing: bool = Field(default=False)  # live paths of an asset: ix_asset_paths_asset_id_missing (0008)
    # the client's own name for the file (an API upload stored under another name), for export matching
    source_name: str | None = None
    first_seen: datetime = _ts()
    last_seen: datetime = _ts()


class Caption(SQLModel, table=True):
    """A caption of one kind for one asset, with the model's text beside the reviewed one."""

    __tablename__ = "captions"
    __table_args__ = (
        sa.UniqueConstraint("asset_id", "kind", name="uq_captions_asset_kind"),
        sa.Index("ix_captions_state_kind_id", "state", "kind", "id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    asset_id: int = Field(foreign_key="assets.id", index=True, ondelete="CASCADE")
    kind: str = Field(max_length=16)
    model_text: str
    text: str
    state: str = Field(default="pending", max_length=16)
    model: str
    adapter_id: str | None = Field(default=None, max_length=64)
    generation: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    version: int = Field(default=1)
    reviewer: str | None = Field(default=None, max_length=128)
    reviewed_at: datetime | None = _ts(nullable=True)
    reject_reason: str | None = None
    # provenance of the text: None for the model's; "xmp", "shopify", "api", "csv"... for human text
    # that existed before catalogcap (imported as accepted, never overwritten by exports)
    source: str | None = Field(default=None, max_length=32)
    context: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)  # product fields the prompt used
    profile: str | None = Field(default=None, max_length=64)  # the [[profiles]] entry that captioned it
    warnings: list[Any] = Field(default_factory=list, sa_type=sa.JSON)  # consistency problems found
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class Product(SQLModel, table=True):
    """Product data about an image: from an import (`products import`), a sidecar `NAME.json`,
    the HTTP API or a plugin. A row names its image by `file` (a file name, or a path relative to
    a watched root, as the source gave it) or is bound to an asset (`asset_id`); `key` makes
    re-imports idempotent (e.g. "csv:lamp.jpg", "sidecar:/photos/lamp.json", "api:17")."""

    __tablename__ = "products"
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, index=True)
    source: str = Field(max_length=32)  # csv | shopify | sidecar | api | plugin
    origin: str | None = None  # where it was read: the imported file, the sidecar's path
    file: str | None = Field(default=None, index=True)
    file_folded: str | None = Field(default=None, index=True)  # `file`'s last part, case-folded, for matching
    asset_id: int | None = Field(default=None, foreign_key="assets.id", index=True, ondelete="CASCADE")
    title: str | None = None
    brand: str | None = None
    category: str | None = None
    sku: str | None = Field(default=None, index=True)
    color: str | None = None
    material: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)  # any other columns, as strings
    alt_text: str | None = None  # human alt text that came with the record (Shopify "Image Alt Text")
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class Job(SQLModel, table=True):
    """A captioning job in the queue; at most one pending/running job per asset."""

    __tablename__ = "jobs"
    __table_args__ = (
        sa.Index("ix_jobs_state_run_after", "state", "run_after"),
        sa.Index(
            "uq_jobs_active_asset",
            "asset_id",
            unique=True,
            sqlite_where=sa.text("state IN ('pending', 'running')"),
            postgresql_where=sa.text("state IN ('pending', 'running')"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    asset_id: int = Field(foreign_key="assets.id", index=True, ondelete="CASCADE")
    state: str = Field(default="pending", max_length=16)
    attempts: int = 0
    last_error: str | None = None
    run_after: datetime = _ts()
    lease_owner: str | None = Field(default=None, max_length=128)
    lease_expires: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    finished_at: datetime | None = _ts(nullable=True)


class Adapter(SQLModel, table=True):
    """A trained LoRA adapter in the registry; at most one is active."""

    __tablename__ = "adapters"
    id: str = Field(primary_key=True, max_length=64)
    base_model: str
    path: str
    state: str = Field(default="candidate", max_length=16, index=True)
    metrics: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    config: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    parent_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = _ts()
    promoted_at: datetime | None = _ts(nullable=True)
    retired_at: datetime | None = _ts(nullable=True)


class Meta(SQLModel, table=True):
    """Small key/value facts about the store (e.g. the held-out split salt)."""

    __tablename__ = "meta"
    key: str = Field(primary_key=True, max_length=64)
    value: str


class TrainingRun(SQLModel, table=True):
    """One training round: its data, the candidate, both evaluations and the decision."""

    __tablename__ = "training_runs"
    id: str = Field(primary_key=True, max_length=64)
    state: str = Field(default="running", max_length=16, index=True)  # running|finished|failed|skipped
    trigger: str = Field(default="manual", max_length=16)  # manual|schedule
    started_at: datetime = _ts()
    finished_at: datetime | None = _ts(nullable=True)
    pid: int | None = None
    adapter_id: str | None = Field(default=None, max_length=64)
    promoted: bool = False
    reason: str | None = None
    train_size: int = 0
    val_size: int = 0
    metrics: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    config: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)


class ApiToken(SQLModel, table=True):
    """A bearer token of the HTTP API; only the sha256 of the whole token is stored."""

    __tablename__ = "api_tokens"
    id: str = Field(primary_key=True, max_length=16)  # the public part of the token, shown in listings
    name: str = Field(max_length=128, index=True)
    scope: str = Field(max_length=16)
    token_hash: str = Field(max_length=64)
    created_at: datetime = _ts()
    last_used_at: datetime | None = _ts(nullable=True)
    revoked_at: datetime | None = _ts(nullable=True)


class WorkerRow(SQLModel, table=True):
    """A captioning process (`catalogcap worker`) and its heartbeat; `status` lists the live ones."""

    __tablename__ = "workers"
    id: str = Field(primary_key=True, max_length=128)  # the lease owner id of its jobs
    host: str = Field(max_length=255)
    pid: int
    started_at: datetime = _ts()
    heartbeat_at: datetime = _ts(index=True)
    jobs_done: int = 0
    stopped_at: datetime | None = _ts(nullable=True)


class OutboxRow(SQLModel, table=True):
    """An outgoing event for one URL (the webhook plugin's outbox), kept until it was delivered.
    Times are UTC epoch seconds: the delivery code counts in them."""

    __tablename__ = "outbox"
    __table_args__ = (
        sa.UniqueConstraint("event_key", "url", name="uq_outbox_event_url"),
        sa.Index("ix_outbox_state_url_id", "state", "url", "id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    event_key: str = Field(max_length=64)
    url: str
    event_type: str = Field(max_length=64)
    body: bytes = Field(sa_type=sa.LargeBinary)
    state: str = Field(default="pending", max_length=16)  # pending|delivered|dead
    attempts: int = 0
    next_attempt_at: float = Field(sa_type=sa.Float(precision=53))
    lease_until: float | None = Field(default=None, sa_type=sa.Float(precision=53))
    last_status: int | None = None
    last_error: str | None = None
    created_at: float = Field(sa_type=sa.Float(precision=53))
    delivered_at: float | None = Field(default=None, sa_type=sa.Float(precision=53))


# Keyset paging of captions by last change (API sync cursor) and the caption-latency metric's
# scan of finished jobs; declared here so the models keep matching the migrations (0003).
sa.Index("ix_captions_updated_at_id", Caption.__table__.c.updated_at, Caption.__table__.c.id)
sa.Index("ix_jobs_finished_at_id", Job.__table__.c.finished_at, Job.__table__.c.id)
sa.Index("ix_asset_paths_asset_id_missing", AssetPath.__table__.c.asset_id, AssetPath.__table__.c.missing)
# status's counts, each read from an index alone (migration 0009)
sa.Index("ix_captions_state_asset_id", Caption.__table__.c.state, Caption.__table__.c.asset_id)
sa.Index("ix_jobs_state_finished_at", Job.__table__.c.state, Job.__table__.c.finished_at)
sa.Index("ix_jobs_errors_updated_at", Job.__table__.c.updated_at,
         sqlite_where=sa.text("last_error IS NOT NULL"), postgresql_where=sa.text("last_error IS NOT NULL"))
sa.Index("ix_assets_missing_since", Asset.__table__.c.missing_since,
         sqlite_where=sa.text("missing_since IS NOT NULL"), postgresql_where=sa.text("missing_since IS NOT NULL"))
