"""`/v1/captions`: incremental sync by cursor, one caption with its ETag, review decisions.

Pages are ordered by (updated_at, id) and the cursor is the last row's pair, so a
catalog keeps the last `next_cursor` and later asks only for what changed since: a
caption reviewed after it was synced comes round again with its new state.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timezone
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, BackgroundTasks, Body, Depends, Header, Query, Response
from fastapi import Path as PathParam
from pydantic import TypeAdapter, ValidationError
from sqlmodel import col, select

from catalogcap.api import auth
from catalogcap.api.context import ApiContext, get_ctx
from catalogcap.api.problems import ApiProblem
from catalogcap.api.schemas import MAX_ID, CaptionOut, CaptionPage, CaptionState, Kind, ReviewIn
from catalogcap.services import SILENT, Deferred
from catalogcap.services.captions import Decision, decide_one
from catalogcap.store.captions import Conflict, has_warnings
from catalogcap.store.database import read_session
from catalogcap.store.models import ApiToken, Asset, Caption
from catalogcap.store.paths import primary_path_of

router = APIRouter(tags=["captions"])
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
CaptionId = Annotated[int, PathParam(ge=1, le=MAX_ID)]
IF_MATCH = r'^\s*(\*|(W/)?"?[0-9]{1,18}"?)\s*$'
ISO_DATETIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}"
_DATETIME = TypeAdapter(datetime)
REVIEWER_MAX = 128  # the reviewer column's length


def encode_cursor(updated_at: datetime, caption_id: int) -> str:
    raw = f"{updated_at.astimezone(timezone.utc).isoformat()}|{caption_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, ident = raw.partition("|")
        at, caption_id = datetime.fromisoformat(stamp), int(ident)
        if at.tzinfo is None or not 0 <= caption_id <= MAX_ID:
            raise ValueError(raw)
        return at.astimezone(timezone.utc), caption_id
    except (ValueError, UnicodeDecodeError, binascii.Error, OverflowError):
        raise ApiProblem(422, "Invalid cursor", "pass a next_cursor from an earlier page, unchanged",
                         code="invalid_cursor") from None


def _parse_since(text: str) -> datetime:
    """A client's RFC 3339 time in UTC (no offset means UTC); the edges of time are clamped."""
    try:
        value = _DATETIME.validate_strings(text)
    except ValidationError:
        raise ApiProblem(422, "Invalid time", f"since={text!r} is not an RFC 3339 date-time such as"
                         " 2026-11-28T10:00:00Z", code="invalid_since") from None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        edge = datetime.min if value.year == 1 else datetime.max
        return edge.replace(tzinfo=timezone.utc)


def _path_column():
    return primary_path_of(Caption.asset_id).label("path")


@router.get("/v1/captions", response_model=CaptionPage, summary="Captions changed since a cursor, oldest first",
            responses={422: {"description": "A bad filter or a cursor that was not given by this API."}})
def list_captions(
    state: Annotated[CaptionState | None, Query(description="Only captions in this state (superseded captions,"
                                                " of replaced files, are listed only when asked for).")] = None,
    kind: Annotated[Kind | None, Query(description="Only this kind.")] = None,
    warnings: Annotated[bool | None, Query(description="true: only captions with consistency warnings;"
                                           " false: only those without.")] = None,
    since: Annotated[str | None, Query(pattern=ISO_DATETIME, max_length=64, json_schema_extra={"format": "date-time"},
                                       description="Only captions written at or after this RFC 3339 time.")] = None,
    cursor: Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9_-]+$",
                                        description="next_cursor of the previous page.")] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000, description="Page size (default api.page_size).")] = None,
    _token: ApiToken = Depends(auth.read),
    ctx: ApiContext = Depends(get_ctx),
) -> CaptionPage:
    """Keep paging while `has_more`; keep the last `next_cursor` to ask again later for what changed.
    Pass the same filters with every page of one walk."""
    limit = limit or ctx.settings.api.page_size
    since_at = _parse_since(since) if since is not None else None
    query = (select(Caption, Asset.fingerprint, _path_column()).join(Asset, col(Asset.id) == Caption.asset_id)
             .order_by(Caption.updated_at, Caption.id).limit(limit + 1))
    # superseded captions (of bytes no file holds any more) only when asked for by state
    query = query.where(Caption.state == state) if state else query.where(Caption.state != "superseded")
    if warnings is not None:
        query = query.where(has_warnings() if warnings else sa.not_(has_warnings()))
    if kind:
        query = query.where(Caption.kind == kind)
    if since_at is not None:
        query = query.where(Caption.updated_at >= since_at)
    if cursor:
        at, after = decode_cursor(cursor)
        query = query.where(sa.or_(Caption.updated_at > at, sa.and_(Caption.updated_at == at, Caption.id > after)))
    with read_session(ctx.engine) as session:
        rows = session.execute(query).all()
    items = [CaptionOut.of(caption, fingerprint, path) for caption, fingerprint, path in rows[:limit]]
    if items:
        next_cursor = encode_cursor(items[-1].updated_at, items[-1].id)
    else:
        next_cursor = cursor or encode_cursor(since_at or EPOCH, 0)
    return CaptionPage(items=items, next_cursor=next_cursor, has_more=len(rows) > limit)


def _caption_out(ctx: ApiContext, caption_id: int) -> CaptionOut:
    with read_session(ctx.engine) as session:
        row = session.execute(
            select(Caption, Asset.fingerprint, _path_column()).join(Asset, col(Asset.id) == Caption.asset_id)
            .where(Caption.id == caption_id)
        ).first()
    if row is None:
        raise ApiProblem(404, "No such caption", f"caption {caption_id} does not exist", code="caption_not_found")
    return CaptionOut.of(*row)


@router.get("/v1/captions/{caption_id}", response_model=CaptionOut, summary="One caption, with its ETag",
            responses={404: {"description": "No such caption."}})
def get_caption(caption_id: CaptionId, response: Response, _token: ApiToken = Depends(auth.read),
                ctx: ApiContext = Depends(get_ctx)) -> CaptionOut:
    out = _caption_out(ctx, caption_id)
    response.headers["ETag"] = f'"{out.version}"'
    return out


def recorded_reviewer(token: ApiToken, named: str | None) -> str:
    """`api:<token name>`, after the client's own name for the reviewer when it gives one."""
    by_token = f"api:{token.name}"
    if not named:
        return by_token[:REVIEWER_MAX]
    room = max(REVIEWER_MAX - len(by_token) - 3, 1)
    return f"{named.strip()[:room]} ({by_token})"[:REVIEWER_MAX]


def expected_version(if_match: str) -> int | None:
    """The version an If-Match names (`"3"`, `3`, `W/"3"`); None for `*` (any version)."""
    value = if_match.strip()
    if value == "*":
        return None
    return int(value.removeprefix("W/").strip('"'))


@router.post(
    "/v1/captions/{caption_id}/review", response_model=CaptionOut, summary="Accept, edit or reject a caption",
    responses={
        404: {"description": "No such caption."},
        409: {"description": "Someone decided first: the caption's version moved on (see current_version)."},
        422: {"description": "An invalid decision or an If-Match that is not a caption version."},
        428: {"description": "If-Match is missing."},
    },
)
def review_caption(
    caption_id: CaptionId,
    decision: Annotated[ReviewIn, Body()],
    response: Response,
    background: BackgroundTasks,
    if_match: Annotated[str, Header(alias="If-Match", pattern=IF_MATCH,
                                    description='The caption version you saw, e.g. "3" (its ETag); * for any.')],
    token: ApiToken = Depends(auth.review),
    ctx: ApiContext = Depends(get_ctx),
) -> CaptionOut:
    """Optimistic concurrency: the decision applies only if the caption is still at the If-Match
    version; otherwise 409 says who changed it and gives the current version.

    The reviewer recorded is the token's name (`api:shop-backend`); a `reviewer` the client
    names is kept beside it (`maria (api:shop-backend)`), so a decision is always traceable to
    the token that made it. Text over the kind's limit is 422 `text_too_long`."""
    announce = Deferred(ctx.hooks, background.add_task) if ctx.hooks is not None else SILENT
    wanted = Decision(decision.decision, recorded_reviewer(token, decision.reviewer),
                      text=getattr(decision, "text", None), reason=getattr(decision, "reason", None),
                      alt_text_limit=ctx.settings.alt_text_limit)
    try:
        decide_one(ctx.engine, announce, caption_id, wanted, expected_version=expected_version(if_match))
    except Conflict as exc:
        current = _caption_out(ctx, caption_id)
        raise ApiProblem(409, "Conflict", str(exc), code="conflict", current_version=current.version,
                         current_state=current.state, headers={"ETag": f'"{current.version}"'}) from None
    out = _caption_out(ctx, caption_id)
    response.headers["ETag"] = f'"{out.version}"'
    return out

