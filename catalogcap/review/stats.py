"""Review numbers per adapter version: the signal that tells whether nightly training helps.

Better captions show as a higher acceptance rate, fewer and smaller edits (mean edit
distance, in characters, over the edited captions), fewer rejections and more items
reviewed per hour. Reviewing time is the gap between one reviewer's consecutive
decisions; a gap longer than `idle` is a break and counts as nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from rapidfuzz.distance import Levenshtein
from sqlmodel import Session

from catalogcap.store.models import Caption

BASE = "base"
IDLE = timedelta(minutes=10)

_c = Caption.__table__.c


@dataclass
class AdapterStats:
    adapter: str  # the adapter id, or "base" for captions of the base model
    captions: int = 0
    pending: int = 0
    accepted: int = 0
    edited: int = 0
    rejected: int = 0
    acceptance_rate: float | None = None
    edit_rate: float | None = None
    rejection_rate: float | None = None
    mean_edit_distance: float | None = None
    items_per_hour: float | None = None

    @property
    def decided(self) -> int:
        return self.accepted + self.edited + self.rejected

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"decided": self.decided}


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance in characters (insertions, deletions, substitutions)."""
    return Levenshtein.distance(a, b)


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def review_stats(session: Session, *, kind: str | None = None, idle: timedelta = IDLE) -> list[AdapterStats]:
    """One row per adapter version (base model first, then in order of first caption), then "all"."""
    scope = [_c.kind == kind] if kind else []
    label = sa.func.coalesce(_c.adapter_id, BASE)
    found: dict[str, AdapterStats] = {}
    first_seen: dict[str, datetime] = {}
    for adapter, state, n, first in session.execute(
        sa.select(label, _c.state, sa.func.count(), sa.func.min(_c.created_at))
        .where(*scope)
        .group_by(label, _c.state)
    ):
        stats = found.setdefault(adapter, AdapterStats(adapter))
        setattr(stats, state, n)
        stats.captions += n
        first_seen[adapter] = min(first, first_seen.get(adapter, first))

    distances: dict[str, list[int]] = defaultdict(list)
    for adapter, model_text, text in session.execute(
        sa.select(label, _c.model_text, _c.text).where(_c.state == "edited", *scope)
    ):
        distances[adapter].append(edit_distance(model_text, text))

    hours = _reviewing_hours(session, label, scope, idle)
    total = AdapterStats("all")
    for stats in found.values():
        for name in ("captions", "pending", "accepted", "edited", "rejected"):
            setattr(total, name, getattr(total, name) + getattr(stats, name))
    distances["all"] = [d for values in distances.values() for d in values]
    hours["all"] = sum(hours.values())
    ordered = sorted(found.values(), key=lambda s: (s.adapter != BASE, first_seen[s.adapter], s.adapter))
    for stats in [*ordered, total]:
        _finish(stats, distances.get(stats.adapter, []), hours.get(stats.adapter, 0.0))
    return [*ordered, total] if ordered else []


def _reviewing_hours(session: Session, label: Any, scope: list[Any], idle: timedelta) -> dict[str, float]:
    """Hours spent per adapter: each decision gets the time since its reviewer's previous one."""
    decided = _c.state.in_(("accepted", "edited", "rejected"))
    spent: dict[str, float] = defaultdict(float)
    previous: tuple[str | None, datetime | None] = (None, None)
    for adapter, reviewer, at in session.execute(
        sa.select(label, _c.reviewer, _c.reviewed_at)
        .where(decided, _c.reviewed_at.is_not(None), *scope)
        .order_by(_c.reviewer, _c.reviewed_at)
    ):
        last_reviewer, last_at = previous
        if reviewer == last_reviewer and last_at is not None and at - last_at <= idle:
            spent[adapter] += (at - last_at).total_seconds() / 3600
        previous = (reviewer, at)
    return spent


def _finish(stats: AdapterStats, distances: list[int], hours: float) -> None:
    stats.acceptance_rate = _ratio(stats.accepted, stats.decided)
    stats.edit_rate = _ratio(stats.edited, stats.decided)
    stats.rejection_rate = _ratio(stats.rejected, stats.decided)
    stats.mean_edit_distance = round(sum(distances) / len(distances), 2) if distances else None
    stats.items_per_hour = round(stats.decided / hours, 1) if hours > 0 else None
