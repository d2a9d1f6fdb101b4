"""Captions of images that are gone: counting them, and pruning them.

An image is gone when none of its paths is live (`store/paths.py`): its pending captions are
*orphaned* (out of the review queue and exports until its bytes are seen again). A pending
caption of bytes a file no longer holds is *superseded* (`intake._drop_superseded`). `prune`
deletes both, and rejected captions of gone images; accepted and edited captions are training
data and stay unless asked. An asset nothing refers to any more (no caption, no live path, no
product row bound to it) goes with its captions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from catalogcap.store.models import Asset, AssetPath, Caption, Job, Product, utcnow

REVIEWED = ("accepted", "edited")
CHUNK = 500


def no_live_path(asset_id: Any) -> Any:
    """SQL: the asset (the column `asset_id`) has no live path. `EXISTS (SELECT 1 ...)`, not
    `SELECT *`: SQLite then answers from the (asset_id, missing) index alone, without reading
    the path row (0.26 -> 0.19 s for status's orphaned count at 1,000,000 captions)."""
    live = sa.exists(sa.literal_column("1")).where(AssetPath.asset_id == asset_id, col(AssetPath.missing).is_(False))
    return ~live


def orphaned_count(session: Session) -> int:
    """Pending captions whose image has no live path."""
    return session.execute(
        select(sa.func.count()).select_from(Caption).where(Caption.state == "pending", no_live_path(Caption.asset_id))
    ).scalar_one()


@dataclass
class PruneReport:
    dry_run: bool
    older_than_days: float | None
    captions: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    assets: int = 0
    kept_reviewed: int = 0
    items: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "older_than_days": self.older_than_days, "captions": self.captions,
                "by_state": self.by_state, "assets": self.assets, "kept_reviewed": self.kept_reviewed,
                "items": self.items}


def prune(session: Session, *, older_than_days: float | None = None, include_reviewed: bool = False,
          dry_run: bool = False, now: datetime | None = None) -> PruneReport:
    """Delete the captions of images with no live path (missing for longer than `older_than_days`,
    by the asset's `missing_since`) and superseded captions, and the assets left with nothing."""
    now = now or utcnow()
    report = PruneReport(dry_run=dry_run, older_than_days=older_than_days)
    gone = sa.or_(Caption.state == "superseded", no_live_path(Caption.asset_id))
    query = select(Caption, Asset).join(Asset, col(Asset.id) == Caption.asset_id).where(gone)
    if older_than_days is not None:
        cutoff = now - timedelta(days=older_than_days)
        query = query.where(sa.func.coalesce(Asset.missing_since, Caption.updated_at) <= cutoff)
    doomed: list[int] = []
    assets: set[int] = set()
    for caption, asset in session.exec(query.order_by(Caption.id)).all():
        if caption.state in REVIEWED and not include_reviewed:
            report.kept_reviewed += 1
            continue
        doomed.append(caption.id)
        assets.add(asset.id)
        report.by_state[caption.state] = report.by_state.get(caption.state, 0) + 1
        report.items.append({"id": caption.id, "asset_id": asset.id, "kind": caption.kind, "state": caption.state,
                             "missing_since": asset.missing_since.isoformat() if asset.missing_since else None})
    report.captions = len(doomed)
    empty = _left_empty(session, assets, set(doomed))
    report.assets = len(empty)
    if dry_run:
        return report
    for start in range(0, len(doomed), CHUNK):
        session.execute(sa.delete(Caption).where(col(Caption.id).in_(doomed[start:start + CHUNK])))
    ids = sorted(empty)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        session.execute(sa.delete(Job).where(col(Job.asset_id).in_(chunk)))
        session.execute(sa.delete(AssetPath).where(col(AssetPath.asset_id).in_(chunk)))
        session.execute(sa.delete(Asset).where(col(Asset.id).in_(chunk)))
    session.flush()
    return report


def _left_empty(session: Session, asset_ids: set[int], doomed: set[int]) -> set[int]:
    """Of these assets, those nothing would refer to once the `doomed` captions are gone."""
    empty: set[int] = set()
    ids = sorted(asset_ids)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        kept = {asset_id for asset_id, caption_id in session.execute(
            select(Caption.asset_id, Caption.id).where(col(Caption.asset_id).in_(chunk))).all()
            if caption_id not in doomed}
        live = set(session.exec(select(AssetPath.asset_id).where(
            col(AssetPath.asset_id).in_(chunk), col(AssetPath.missing).is_(False))).all())
        bound = set(session.exec(select(Product.asset_id).where(col(Product.asset_id).in_(chunk))).all())
        empty |= set(chunk) - kept - live - bound
    return empty
