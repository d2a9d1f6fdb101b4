"""An asset's paths, and the one definition of its primary path.

An asset may be known under several paths (copies, moves). Its *primary* path is its
first live path in the order the paths were registered (lowest id); an asset none of
whose paths is live has no primary path. Every reader that names "the" file of an image
(the CLI, the API, plugin events, status) uses `primary_path_of` or `primary_path`, so
they all name the same file; the worker reads files in `LIVE_FIRST` order.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from catalogcap.store.models import AssetPath

LIVE_FIRST = (col(AssetPath.missing), col(AssetPath.id))  # live paths first, each group in registration order


def primary_path_of(asset_id: Any) -> Any:
    """A correlated scalar subquery: the primary path of the asset whose id is the column `asset_id`."""
    return (
        select(AssetPath.path)
        .where(AssetPath.asset_id == asset_id, col(AssetPath.missing).is_(False))
        .order_by(col(AssetPath.id))
        .limit(1)
        .scalar_subquery()
    )


def primary_path(session: Session, asset_id: int) -> str | None:
    """The primary path of one asset, or None when none of its paths is live."""
    return session.exec(
        select(AssetPath.path).where(AssetPath.asset_id == asset_id, col(AssetPath.missing).is_(False))
        .order_by(col(AssetPath.id)).limit(1)
    ).first()


def live_paths(session: Session, asset_ids: set[int] | list[int]) -> dict[int, list[str]]:
    """Each asset's live paths, primary first."""
    found: dict[int, list[str]] = {}
    for row in session.exec(
        select(AssetPath).where(col(AssetPath.asset_id).in_(list(asset_ids)), col(AssetPath.missing).is_(False))
        .order_by(col(AssetPath.id))
    ).all():
        found.setdefault(row.asset_id, []).append(row.path)
    return found
