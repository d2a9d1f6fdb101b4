"""Review decisions from any door: validated by the store's `decide`, announced after commit.

`decide_each` gives every caption its own transaction (the CLI: `accept 1 2 999` saves and
announces 1 and 2 and reports 999); `decide_together` saves a set in one transaction (a
bulk accept in the review UI, one API request); `restore_together` is the review UI's undo.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from catalogcap.errors import CatalogcapError, NotFound
from catalogcap.services.announce import Announcer
from catalogcap.store.captions import DEFAULT_ALT_TEXT_LIMIT, Conflict, decide, restore
from catalogcap.store.database import write_session
from catalogcap.store.models import Caption

SNAPSHOT_FIELDS = ("state", "text", "reviewer", "reviewed_at", "reject_reason", "warnings")


@dataclass(frozen=True)
class Change:
    """One caption a commit changed: its reviewed fields before, and the caption after."""

    before: dict[str, Any]
    after: Caption


@dataclass
class Decided:
    """What one call saved and why the rest was not saved."""

    decision: str
    changes: list[Change] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    refused: dict[int, CatalogcapError] = field(default_factory=dict)  # by caption id: a rule said no

    @property
    def ids(self) -> list[int]:
        return [change.after.id for change in self.changes]

    @property
    def errors(self) -> list[CatalogcapError]:
        """Every caption not saved, as an error a user can read, in caption-id order."""
        found: dict[int, CatalogcapError] = dict(self.refused)
        found.update({c.caption.id: c for c in self.conflicts})
        found.update({i: NotFound(f"caption {i} does not exist") for i in self.missing})
        return [found[i] for i in sorted(found)]


@dataclass(frozen=True)
class Decision:
    """A reviewer's decision, the same for every caption it is applied to."""

    decision: str
    reviewer: str
    text: str | None = None
    reason: str | None = None
    alt_text_limit: int = DEFAULT_ALT_TEXT_LIMIT


def _apply(session: Any, caption_id: int, version: int | None, d: Decision, decided: Decided) -> None:
    caption = session.get(Caption, caption_id)
    if caption is None:
        decided.missing.append(caption_id)
        return
    before = {name: getattr(caption, name) for name in SNAPSHOT_FIELDS}
    try:
        after = decide(session, caption_id, d.decision, reviewer=d.reviewer, text=d.text, reason=d.reason,
                       expected_version=version, alt_text_limit=d.alt_text_limit)
    except Conflict as exc:
        decided.conflicts.append(exc)
        return
    decided.changes.append(Change(before, after))


def decide_each(engine: Engine, announce: Announcer, caption_ids: Iterable[int], d: Decision) -> Decided:
    """Decide each caption in its own transaction; a caption refused (missing, too long, changed)
    does not stop the others, and each commit is announced before the next caption."""
    decided = Decided(d.decision)
    for caption_id in caption_ids:
        one = Decided(d.decision)
        try:
            with write_session(engine) as session:
                _apply(session, caption_id, None, d, one)
        except CatalogcapError as exc:
            decided.refused[caption_id] = exc
            continue
        decided.changes += one.changes
        decided.conflicts += one.conflicts
        decided.missing += one.missing
        if one.ids:
            announce.captions_reviewed(one.ids, d.decision)
    return decided


def decide_together(engine: Engine, announce: Announcer, targets: Iterable[tuple[int, int | None]],
                    d: Decision) -> Decided:
    """Decide (caption id, version seen) pairs in one transaction. A conflict or a missing
    caption skips that caption; any other refusal (a text over its limit) raises and saves none."""
    decided = Decided(d.decision)
    with write_session(engine) as session:
        for caption_id, version in targets:
            _apply(session, caption_id, version, d, decided)
    if decided.ids:
        announce.captions_reviewed(decided.ids, d.decision)
    return decided


def decide_one(engine: Engine, announce: Announcer, caption_id: int, d: Decision,
               expected_version: int | None = None) -> Caption:
    """Decide one caption; raises `NotFound`, `Conflict` or the rule's error when nothing was saved."""
    decided = decide_together(engine, announce, [(caption_id, expected_version)], d)
    if decided.conflicts:
        raise decided.conflicts[0]
    if decided.missing:
        raise NotFound(f"caption {caption_id} does not exist")
    return decided.changes[0].after


def restore_together(engine: Engine, announce: Announcer, undone: Iterable[tuple[int, dict[str, Any], int]],
                     decision: str = "undo") -> Decided:
    """Put back (caption id, fields before, version after the decision) in one transaction, for
    each caption nobody changed since; announced as `decision`."""
    decided = Decided(decision)
    with write_session(engine) as session:
        for caption_id, before, version_after in undone:
            try:
                caption = restore(session, caption_id, before, expected_version=version_after)
            except Conflict as exc:
                decided.conflicts.append(exc)
                continue
            except NotFound:
                decided.missing.append(caption_id)
                continue
            decided.changes.append(Change(before, caption))
    if decided.ids:
        announce.captions_reviewed(decided.ids, decision)
    return decided
