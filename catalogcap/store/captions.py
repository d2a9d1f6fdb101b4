"""Captions in the store: saving model output, listing, and review decisions.

A review decision is an optimistic-concurrency update: it names the caption version the
reviewer saw; if someone else decided first, the version moved on and `Conflict` says so.
The model's original text is never overwritten by a review.

The length rule lives here, in `decide`, and nowhere else: whichever way a decision comes
(the CLI, the review UI, a spreadsheet import, the HTTP API), alt text over
`alt_text_limit` characters and descriptions over `DESCRIPTION_LIMIT` are refused with
`TextTooLong`, which names the limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from catalogcap.errors import CatalogcapError, NotFound
from catalogcap.store.models import CAPTION_STATES, KINDS, Asset, AssetPath, Caption, utcnow
from catalogcap.store.paths import primary_path_of

DECISIONS = ("accept", "edit", "reject", "reset")
DEFAULT_ALT_TEXT_LIMIT = 125  # the alt_text_limit setting's default
DESCRIPTION_LIMIT = 1000  # what the captioner cuts descriptions to


def text_limit(kind: str, alt_text_limit: int = DEFAULT_ALT_TEXT_LIMIT) -> int:
    """The most characters a caption of `kind` may have."""
    return alt_text_limit if kind == "alt_text" else DESCRIPTION_LIMIT


def length_problem(kind: str, text: str, alt_text_limit: int = DEFAULT_ALT_TEXT_LIMIT) -> str | None:
    """Why `text` is too long for a caption of `kind`, or None."""
    limit = text_limit(kind, alt_text_limit)
    if len(text) <= limit:
        return None
    setting = "the alt_text_limit setting" if kind == "alt_text" else "the description limit"
    return (f"{kind.replace('_', ' ')} is {len(text)} characters, over the limit of {limit} ({setting});"
            " shorten it")


class TextTooLong(CatalogcapError):
    """A reviewer's text is longer than the limit of its kind; nothing was saved."""

    def __init__(self, caption_id: int, problem: str, limit: int) -> None:
        super().__init__(f"caption {caption_id}: {problem}")
        self.caption_id, self.limit = caption_id, limit


class Conflict(CatalogcapError):
    """Someone else changed the caption since it was read."""

    def __init__(self, caption: Caption) -> None:
        super().__init__(
            f"caption {caption.id} was changed by {caption.reviewer or 'the captioner'} (now {caption.state},"
            f" version {caption.version}); reload it and decide again"
        )
        self.caption = caption


def save_model_captions(
    session: Session, asset_id: int, texts: dict[str, str], *, model: str, adapter_id: str | None,
    generation: dict[str, dict[str, Any]], context: dict[str, dict[str, Any]] | None = None,
    profile: str | None = None, alt_text_limit: int = DEFAULT_ALT_TEXT_LIMIT,
) -> list[Caption]:
    """Insert or refresh the model's captions of an asset. Reviewed captions (and human text
    imported as accepted) are kept as they are; a pending one is replaced by the new model text.

    `context[kind]`: the provenance of the product context the prompt used, stored with the
    caption: {"fields": {name: value used}, "template": the prompt template, "prompt": the
    rendered prompt, "sources": [...]}. `profile`: the [[profiles]] entry that captioned it.
    Each saved caption's `warnings` are computed here (`catalogcap.products.consistency`)."""
    from catalogcap.products.consistency import caption_warnings, catalog_vocabulary

    now = utcnow()
    saved = []
    vocabulary = catalog_vocabulary(session)
    for kind in KINDS:
        used = (context or {}).get(kind) or {}
        caption = session.exec(select(Caption).where(Caption.asset_id == asset_id, Caption.kind == kind)).first()
        if caption is None:
            caption = Caption(asset_id=asset_id, kind=kind, model_text=texts[kind], text=texts[kind],
                              model=model, adapter_id=adapter_id, generation=generation[kind],
                              context=used, profile=profile, created_at=now, updated_at=now)
        elif caption.state == "pending":
            caption.model_text = caption.text = texts[kind]
            caption.model, caption.adapter_id, caption.generation = model, adapter_id, generation[kind]
            caption.context, caption.profile = used, profile
            caption.version += 1
            caption.updated_at = now
        else:
            saved.append(caption)
            continue
        caption.warnings = caption_warnings(kind, caption.text, used, alt_text_limit=alt_text_limit,
                                            vocabulary=vocabulary)
        session.add(caption)
        saved.append(caption)
    session.flush()
    return saved


def import_human(session: Session, asset_id: int, kind: str, text: str, *, source: str,
                 alt_text_limit: int = DEFAULT_ALT_TEXT_LIMIT, now: datetime | None = None) -> Caption | None:
    """Record text a person wrote before catalogcap saw the image (embedded XMP alt text, a
    Shopify "Image Alt Text", an API field) as the asset's caption of `kind`: state `accepted`,
    no model, `source` noted. It then counts as a reference for training and the model's text
    never replaces it. A caption a reviewer already decided is kept; a pending model caption is
    replaced (its model text stays beside it). Returns None, changing nothing, for empty text or
    text over the kind's limit."""
    text = " ".join((text or "").split())
    if not text or length_problem(kind, text, alt_text_limit):
        return None
    now = now or utcnow()
    caption = session.exec(select(Caption).where(Caption.asset_id == asset_id, Caption.kind == kind)).first()
    if caption is None:
        caption = Caption(asset_id=asset_id, kind=kind, model_text=text, text=text, state="accepted", model="",
                          source=source, reviewer=f"imported:{source}", reviewed_at=now, created_at=now,
                          updated_at=now)
    elif caption.state not in ("pending", "superseded") and not (caption.reviewer or "").startswith("imported:"):
        return caption  # a reviewer decided it (or changed imported text) here: their decision stands
    elif caption.state in ("pending", "superseded") or caption.source != source or caption.text != text:
        caption.text, caption.state, caption.source = text, "accepted", source
        caption.reviewer, caption.reviewed_at, caption.updated_at = f"imported:{source}", now, now
        caption.reject_reason = None
        caption.version += 1
    else:
        return caption
    session.add(caption)
    session.flush()
    return caption


def decide(
    session: Session, caption_id: int, decision: str, *, reviewer: str, text: str | None = None,
    expected_version: int | None = None, reason: str | None = None, now: datetime | None = None,
    alt_text_limit: int = DEFAULT_ALT_TEXT_LIMIT,
) -> Caption:
    """Apply a reviewer's decision (accept / edit / reject / reset to pending) atomically; an accepted
    or edited text over its kind's limit raises `TextTooLong`. The caption's warnings are worked
    out again for its final text (against the context it was made with)."""
    from catalogcap.products.consistency import caption_warnings, catalog_vocabulary

    if decision not in DECISIONS:
        raise CatalogcapError(f"unknown decision {decision!r}; use one of {', '.join(DECISIONS)}")
    caption = session.get(Caption, caption_id)
    if caption is None:
        raise NotFound(f"caption {caption_id} does not exist")
    if expected_version is not None and caption.version != expected_version:
        raise Conflict(caption)
    values: dict[str, Any] = {"reviewer": reviewer, "reviewed_at": now or utcnow(), "updated_at": now or utcnow(),
                              "version": caption.version + 1}
    if decision == "accept":
        final = caption.text if text is None else text.strip()
        values.update(state="accepted" if final == caption.model_text else "edited", text=final,
                      reject_reason=None)
    elif decision == "edit":
        if not text or not text.strip():
            raise CatalogcapError("an edit needs the corrected text; to discard the caption, reject it")
        final = text.strip()
        values.update(state="accepted" if final == caption.model_text else "edited", text=final,
                      reject_reason=None)
    elif decision == "reject":
        values.update(state="rejected", reject_reason=(reason or "").strip() or None)
    else:  # reset: back to the model's text, pending
        values.update(state="pending", text=caption.model_text, reviewer=None, reviewed_at=None,
                      reject_reason=None)
    if decision in ("accept", "edit"):
        problem = length_problem(caption.kind, values["text"], alt_text_limit)
        if problem:
            raise TextTooLong(caption_id, problem, text_limit(caption.kind, alt_text_limit))
    if "text" in values:
        values["warnings"] = caption_warnings(caption.kind, values["text"], caption.context or {},
                                              alt_text_limit=alt_text_limit, vocabulary=catalog_vocabulary(session))
    result = session.execute(
        sa.update(Caption).where(Caption.id == caption_id, Caption.version == caption.version).values(**values)
    )
    if result.rowcount != 1:
        session.expire(caption)
        raise Conflict(session.get(Caption, caption_id))
    session.expire(caption)
    return session.get(Caption, caption_id)


def restore(session: Session, caption_id: int, snapshot: dict[str, Any], *, expected_version: int) -> Caption:
    """Undo: put back a caption's reviewed fields from a snapshot (and its warnings, when the
    snapshot has them: they belong to its text), if nobody changed it since."""
    fields = {k: snapshot[k] for k in ("state", "text", "reviewer", "reviewed_at", "reject_reason")}
    if "warnings" in snapshot:
        fields["warnings"] = list(snapshot["warnings"] or [])
    result = session.execute(
        sa.update(Caption).where(Caption.id == caption_id, Caption.version == expected_version)
        .values(**fields, version=expected_version + 1, updated_at=utcnow())
    )
    caption = session.get(Caption, caption_id)
    if result.rowcount != 1:
        raise Conflict(caption) if caption else NotFound(f"caption {caption_id} does not exist")
    session.refresh(caption)
    return caption


@dataclass(frozen=True)
class CaptionRow:
    id: int
    asset_id: int
    path: str | None
    kind: str
    text: str
    model_text: str
    state: str
    model: str
    adapter: str | None
    version: int
    reviewer: str | None
    created_at: datetime
    updated_at: datetime
    context: dict[str, Any] = field(default_factory=dict)
    warnings: list[Any] = field(default_factory=list)
    source: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "asset_id": self.asset_id, "path": self.path, "kind": self.kind, "text": self.text,
            "model_text": self.model_text, "state": self.state, "model": self.model, "adapter": self.adapter,
            "version": self.version, "reviewer": self.reviewer, "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(), "source": self.source, "context": self.context,
            "warnings": self.warnings,
        }


def has_warnings(column: Any = None) -> Any:
    """SQL: the caption has at least one warning (portable: the JSON list read as text)."""
    column = Caption.warnings if column is None else column
    return sa.func.coalesce(sa.cast(column, sa.Text), "[]").not_in(["[]", "null"])


def list_captions(
    session: Session, *, state: str | None = None, kind: str | None = None, limit: int | None = None,
    after_id: int = 0, asset_id: int | None = None, search: str | None = None, folder: str | None = None,
    warnings: bool | None = None,
) -> list[CaptionRow]:
    """Captions in id order, with their asset's path, filtered. Superseded captions (of bytes no file
    holds any more) are listed only when asked for by `state`; `warnings`: only captions with (True)
    or without (False) consistency warnings."""
    if state is not None and state not in CAPTION_STATES:
        raise CatalogcapError(f"unknown caption state {state!r}; use one of {', '.join(CAPTION_STATES)}")
    if kind is not None and kind not in KINDS:
        raise CatalogcapError(f"unknown caption kind {kind!r}; use one of {', '.join(KINDS)}")
    path = primary_path_of(Caption.asset_id).label("path")
    query = select(Caption, path).where(Caption.id > after_id).order_by(Caption.id)
    # superseded captions (of bytes no file holds any more) only when asked for by state
    query = query.where(Caption.state == state) if state else query.where(Caption.state != "superseded")
    if warnings is not None:
        query = query.where(has_warnings() if warnings else sa.not_(has_warnings()))
    if kind:
        query = query.where(Caption.kind == kind)
    if asset_id is not None:
        query = query.where(Caption.asset_id == asset_id)
    if search:
        query = query.where(col(Caption.text).ilike(f"%{search}%"))
    if folder:
        prefix = folder.rstrip("/") + "/"
        query = query.where(
            sa.exists().where(AssetPath.asset_id == Caption.asset_id, col(AssetPath.path).startswith(prefix))
        )
    if limit is not None:
        query = query.limit(limit)
    return [_row(caption, p) for caption, p in session.exec(query).all()]


def _row(caption: Caption, path: str | None) -> CaptionRow:
    return CaptionRow(caption.id, caption.asset_id, path, caption.kind, caption.text, caption.model_text,
                      caption.state, caption.model, caption.adapter_id, caption.version, caption.reviewer,
                      caption.created_at, caption.updated_at, dict(caption.context or {}),
                      list(caption.warnings or []), caption.source)


def get_caption(session: Session, caption_id: int) -> tuple[Caption, Asset, list[AssetPath]]:
    caption = session.get(Caption, caption_id)
    if caption is None:
        raise NotFound(f"caption {caption_id} does not exist; `catalogcap captions list` shows the ids")
    asset = session.get(Asset, caption.asset_id)
    paths = session.exec(select(AssetPath).where(AssetPath.asset_id == caption.asset_id)).all()
    return caption, asset, list(paths)


def state_counts(session: Session) -> dict[str, int]:
    """Captions by state (every state named, zeros included)."""
    rows = session.execute(select(Caption.state, sa.func.count()).group_by(Caption.state)).all()
    found = dict.fromkeys(CAPTION_STATES, 0)
    found.update({state: n for state, n in rows})
    return found
