"""Plain snapshots handed to plugins: no database session, safe to keep or send anywhere."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from catalogcap.store.models import KINDS, Adapter, Asset, AssetPath, Caption
from catalogcap.store.paths import live_paths


@dataclass(frozen=True)
class CaptionEvent:
    id: int
    asset_id: int
    fingerprint: str
    paths: tuple[str, ...]  # live paths of the image, primary first (store/paths.py)
    kind: str
    text: str
    model_text: str
    state: str
    model: str
    adapter: str | None
    version: int
    reviewer: str | None
    reviewed_at: datetime | None
    reject_reason: str | None
    width: int | None
    height: int | None
    format: str | None
    source: str | None = None  # human text from before catalogcap (xmp, shopify, api...); None: the model's
    names: tuple[str, ...] = ()  # the clients' own names of the live paths (AssetPath.source_name), for matching

    @property
    def path(self) -> str | None:
        return self.paths[0] if self.paths else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["paths"] = list(self.paths)
        data["names"] = list(self.names)
        data["path"] = self.path
        data["reviewed_at"] = self.reviewed_at.isoformat() if self.reviewed_at else None
        return data


@dataclass(frozen=True)
class AdapterEvent:
    id: str
    base_model: str
    path: str
    metrics: dict[str, Any]
    promoted_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["promoted_at"] = self.promoted_at.isoformat() if self.promoted_at else None
        return data


CHUNK = 500  # ids per IN (...) query: well under SQLite's variable limit


def caption_events(session: Session, caption_ids: list[int]) -> list[CaptionEvent]:
    """Snapshots of the given captions (id order) with their asset's live paths."""
    events: list[CaptionEvent] = []
    ids = sorted(set(caption_ids))
    for start in range(0, len(ids), CHUNK):
        events.extend(_chunk(session, ids[start:start + CHUNK]))
    return events


def _chunk(session: Session, caption_ids: list[int]) -> list[CaptionEvent]:
    rows = session.exec(
        select(Caption, Asset).join(Asset, col(Asset.id) == Caption.asset_id)
        .where(col(Caption.id).in_(caption_ids)).order_by(Caption.id)
    ).all()
    asset_ids = {asset.id for _, asset in rows}
    paths = live_paths(session, asset_ids)
    names: dict[int, list[str]] = {}
    for asset_id, name in session.execute(
        select(AssetPath.asset_id, AssetPath.source_name).where(
            col(AssetPath.asset_id).in_(list(asset_ids)), col(AssetPath.missing).is_(False),
            col(AssetPath.source_name).is_not(None)).order_by(col(AssetPath.id))
    ).all():
        if name and name not in names.setdefault(asset_id, []):
            names[asset_id].append(name)
    return [
        CaptionEvent(c.id, c.asset_id, a.fingerprint, tuple(paths.get(a.id, [])), c.kind, c.text,
                     c.model_text, c.state, c.model, c.adapter_id, c.version, c.reviewer, c.reviewed_at,
                     c.reject_reason, a.width, a.height, a.format, c.source, tuple(names.get(a.id, [])))
        for c, a in rows
    ]


def select_caption_events(session: Session, *, states: Sequence[str] = ("accepted", "edited"),
                          kinds: Sequence[str] = KINDS, folder: str | None = None) -> list[CaptionEvent]:
    """Snapshots of every caption in `states` of `kinds` (optionally only images under `folder`).
    Pending captions of images with no live path are left out (they wait until the file is back)."""
    live = sa.exists().where(AssetPath.asset_id == Caption.asset_id, col(AssetPath.missing).is_(False))
    query = select(Caption.id).where(col(Caption.state).in_(list(states)), col(Caption.kind).in_(list(kinds)),
                                     sa.or_(Caption.state != "pending", live))
    if folder:
        prefix = folder.rstrip("/") + "/"
        query = query.where(sa.exists().where(AssetPath.asset_id == Caption.asset_id,
                                              col(AssetPath.missing).is_(False),
                                              col(AssetPath.path).startswith(prefix, autoescape=True)))
    return caption_events(session, list(session.exec(query.order_by(Caption.id)).all()))


def adapter_event(adapter: Adapter) -> AdapterEvent:
    return AdapterEvent(adapter.id, adapter.base_model, adapter.path, dict(adapter.metrics),
                        adapter.promoted_at)
