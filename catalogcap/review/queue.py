"""The review queue: captions matching a filter, read a page at a time in id order.

Paging is keyset (`id > last`), never OFFSET, so page 500 costs what page 1 costs. With a
state filter, each kind is read through the (state, kind, id) index and the pages are
merged here, so even 100,000 pending captions need no sort and no scan for the first screen.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from catalogcap.errors import CatalogcapError
from catalogcap.store.captions import get_caption, has_warnings
from catalogcap.store.models import CAPTION_STATES, KINDS, AssetPath, Caption

PAGE_SIZE = 200
NO_ADAPTER = "none"

_captions = Caption.__table__
_paths = AssetPath.__table__


@dataclass(frozen=True)
class Filters:
    """Which captions the reviewer works through; None means any."""

    state: str | None = "pending"
    kind: str | None = None
    folder: str | None = None
    model: str | None = None
    adapter: str | None = None  # an adapter id, or "none" for captions of the base model
    search: str | None = None
    warnings: bool = False  # only captions with consistency warnings

    def __post_init__(self) -> None:
        if self.state is not None and self.state not in CAPTION_STATES:
            allowed = ", ".join(CAPTION_STATES)
            raise CatalogcapError(f"unknown caption state {self.state!r}; use one of {allowed}")
        if self.kind is not None and self.kind not in KINDS:
            raise CatalogcapError(f"unknown caption kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if self.folder:
            object.__setattr__(self, "folder", str(Path(self.folder).expanduser().absolute()))
        for name in ("model", "adapter", "search"):
            if not (getattr(self, name) or "").strip():
                object.__setattr__(self, name, None)

    def with_(self, **changes: Any) -> Filters:
        return replace(self, **changes)

    def describe(self) -> str:
        parts = [self.state or "any state", self.kind or "all kinds"]
        if self.folder:
            parts.append(f"in {self.folder}")
        if self.model:
            parts.append(f"model ~ {self.model}")
        if self.adapter:
            parts.append("base model" if self.adapter == NO_ADAPTER else f"adapter {self.adapter}")
        if self.search:
            parts.append(f'text ~ "{self.search}"')
        if self.warnings:
            parts.append("with warnings")
        return " · ".join(parts)


@dataclass
class QueueItem:
    """One row of the queue as last read; `version` is what a decision on it expects."""

    id: int
    asset_id: int
    kind: str
    text: str
    model_text: str
    state: str
    version: int
    reviewer: str | None
    path: str | None


@dataclass(frozen=True)
class Sibling:
    kind: str
    text: str
    state: str


@dataclass(frozen=True)
class Detail:
    """Everything the detail pane shows about one caption and its image."""

    id: int
    kind: str
    text: str
    model_text: str
    state: str
    version: int
    reviewer: str | None
    reviewed_at: datetime | None
    reject_reason: str | None
    model: str
    adapter: str | None
    created_at: datetime
    paths: tuple[str, ...]  # live paths first
    all_missing: bool
    width: int | None
    height: int | None
    format: str | None
    size: int | None
    siblings: tuple[Sibling, ...]
    warnings: tuple[dict[str, Any], ...] = ()
    context: dict[str, str] = field(default_factory=dict)  # the product fields the prompt used
    source: str | None = None  # human text from before catalogcap (e.g. "xmp")

    @property
    def path(self) -> str | None:
        return self.paths[0] if self.paths else None


def _has_live_path() -> Any:
    # coalesce keeps SQLite off the nearly useless `missing` index (see _live_path): the lookup
    # stays on asset_id
    return sa.exists().where(_paths.c.asset_id == _captions.c.asset_id,
                             sa.func.coalesce(_paths.c.missing, sa.true()) == sa.false())


def _conditions(filters: Filters, kind: str | None) -> list[Any]:
    c = _captions.c
    # a pending caption of an image no file holds any more waits out of the queue (it comes back
    # when its bytes are seen again)
    where: list[Any] = [sa.or_(c.state != "pending", _has_live_path())]
    if filters.state:
        where.append(c.state == filters.state)
    else:
        where.append(c.state != "superseded")  # history, not work: only when asked for by state
    if kind:
        where.append(c.kind == kind)
    if filters.model:
        where.append(c.model.icontains(filters.model, autoescape=True))
    if filters.adapter == NO_ADAPTER:
        where.append(c.adapter_id.is_(None))
    elif filters.adapter:
        where.append(c.adapter_id == filters.adapter)
    if filters.search:
        where.append(sa.or_(c.text.icontains(filters.search, autoescape=True),
                            c.model_text.icontains(filters.search, autoescape=True)))
    if filters.warnings:
        where.append(has_warnings(c.warnings))
    if filters.folder:
        prefix = filters.folder.rstrip("/") + "/"
        # substr, not LIKE: exact and case-sensitive on every backend, and no wildcard escaping
        where.append(sa.exists().where(
            _paths.c.asset_id == c.asset_id, sa.func.substr(_paths.c.path, 1, len(prefix)) == prefix
        ))
    return where


def _live_path() -> Any:
    # Filtering on `missing` here would let SQLite pick the nearly useless `missing` index
    # (a scan per row); ordering by it keeps the lookup on asset_id, and a vanished
    # image still shows where it was last seen.
    return (
        sa.select(_paths.c.path)
        .where(_paths.c.asset_id == _captions.c.asset_id)
        .order_by(_paths.c.missing, _paths.c.path)
        .limit(1)
        .correlate(_captions)
        .scalar_subquery()
        .label("path")
    )


def page_query(filters: Filters, kind: str | None, after_id: int, limit: int) -> sa.Select:
    """The SELECT for one kind's page (exposed so tests can read its query plan)."""
    c = _captions.c
    return (
        sa.select(c.id, c.asset_id, c.kind, c.text, c.model_text, c.state, c.version, c.reviewer,
                  _live_path())
        .where(c.id > after_id, *_conditions(filters, kind))
        .order_by(c.id)
        .limit(limit)
    )


def _kinds(filters: Filters) -> list[str | None]:
    if filters.kind:
        return [filters.kind]
    # Without a state the primary key already gives id order; with one, read each kind
    # through (state, kind, id) and merge, rather than sort every matching row.
    return list(KINDS) if filters.state else [None]


def page(session: Session, filters: Filters, *, after_id: int = 0, limit: int = PAGE_SIZE) -> list[QueueItem]:
    """Up to `limit` matching captions with ids above `after_id`, in id order."""
    pages = [
        [QueueItem(*row) for row in session.execute(page_query(filters, kind, after_id, limit))]
        for kind in _kinds(filters)
    ]
    merged = pages[0] if len(pages) == 1 else heapq.merge(*pages, key=lambda item: item.id)
    return list(merged)[:limit]


def count(session: Session, filters: Filters) -> int:
    """How many captions match (what is left to review, for the pending filter)."""
    query = sa.select(sa.func.count()).select_from(_captions).where(*_conditions(filters, filters.kind))
    return session.execute(query).scalar_one()


def refresh(session: Session, ids: list[int]) -> dict[int, tuple[str, int, str, str | None]]:
    """Current (state, version, text, reviewer) of these captions: what others changed meanwhile."""
    if not ids:
        return {}
    c = _captions.c
    rows = session.execute(sa.select(c.id, c.state, c.version, c.text, c.reviewer).where(c.id.in_(ids)))
    return {row.id: (row.state, row.version, row.text, row.reviewer) for row in rows}


def detail(session: Session, caption_id: int) -> Detail:
    """The caption, its image's facts and paths, and the other captions of the same image."""
    caption, asset, paths = get_caption(session, caption_id)
    ordered = sorted(paths, key=lambda p: (p.missing, p.id))
    siblings = session.exec(
        select(Caption)
        .where(Caption.asset_id == caption.asset_id, Caption.id != caption.id)
        .order_by(col(Caption.id))
    ).all()
    return Detail(
        id=caption.id, kind=caption.kind, text=caption.text, model_text=caption.model_text,
        state=caption.state, version=caption.version, reviewer=caption.reviewer,
        reviewed_at=caption.reviewed_at, reject_reason=caption.reject_reason,
        model=caption.model, adapter=caption.adapter_id,
        created_at=caption.created_at, paths=tuple(p.path for p in ordered),
        all_missing=all(p.missing for p in ordered), width=asset.width if asset else None,
        height=asset.height if asset else None, format=asset.format if asset else None,
        size=asset.size if asset else None,
        siblings=tuple(Sibling(s.kind, s.text, s.state) for s in siblings),
        warnings=tuple(caption.warnings or ()), context=dict((caption.context or {}).get("fields") or {}),
        source=caption.source,
    )
