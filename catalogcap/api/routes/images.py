"""`/v1/images`: add an image (upload or server path), read its state and captions, long-poll."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlmodel import Session, col, select

from catalogcap.api import auth
from catalogcap.api.context import ApiContext, get_ctx
from catalogcap.api.problems import ApiProblem
from catalogcap.api.schemas import FINGERPRINT, AssetOut, CaptionOut, ImageCaptions, ProductIn, check_text
from catalogcap.api.tokens import scope_allows
from catalogcap.api.uploads import Limits, place, resolve_registered, sniff, spool, upload_root
from catalogcap.intake import Registered, register_file
from catalogcap.store.database import read_session, write_session
from catalogcap.store.models import ApiToken, Asset, AssetPath, Caption, Job
from catalogcap.store.paths import primary_path

upload_router = APIRouter(tags=["images"])
router = APIRouter(tags=["images"])
Fingerprint = Annotated[str, PathParam(pattern=FINGERPRINT, description="sha256 of the image's bytes (hex).")]
Wait = Annotated[float, Query(ge=0, le=600, description="Seconds to wait (at most api.max_wait_seconds).")]
NOT_FOUND = {404: {"description": "No image has this fingerprint."}}


def _latest_job(session: Session, asset_id: int) -> Job | None:
    return session.exec(select(Job).where(Job.asset_id == asset_id).order_by(col(Job.id).desc())).first()


def _has_live_file(session: Session, asset_id: int) -> bool:
    rows = session.exec(
        select(AssetPath).where(AssetPath.asset_id == asset_id, col(AssetPath.missing).is_(False))
    ).all()
    return any(Path(row.path).is_file() for row in rows)


def _asset_out(ctx: ApiContext, asset_id: int) -> AssetOut:
    with read_session(ctx.engine) as session:
        asset = session.get(Asset, asset_id)
        return AssetOut.of(asset, _latest_job(session, asset_id))


def _registered(ctx: ApiContext, item: Registered) -> tuple[AssetOut, bool]:
    if item.outcome == "vanished":
        raise ApiProblem(404, "No such file", "the file disappeared while it was being registered",
                         code="path_not_found")
    if item.outcome == "rejected" or item.asset_id is None:
        raise ApiProblem(422, "Image refused", item.reason or "the image cannot be read", code="rejected")
    return _asset_out(ctx, item.asset_id), item.outcome in ("new", "changed")


def _upload(ctx: ApiContext, file: UploadFile) -> tuple[AssetOut, bool, Path | None]:
    """(image, created, the file it is kept in; None for bytes known already)."""
    settings = ctx.settings
    limits, root = Limits.of(settings), upload_root(settings)
    tmp, fingerprint = spool(file.file, root, limits.max_bytes)
    try:
        with read_session(ctx.engine) as session:
            known = session.exec(select(Asset).where(Asset.fingerprint == fingerprint)).first()
            if known is not None and _has_live_file(session, known.id):
                return AssetOut.of(known, _latest_job(session, known.id)), False, None
        probed = sniff(tmp, limits)
        final = place(tmp, root, fingerprint, probed[1].format)  # a rename: size and mtime stay
    finally:
        tmp.unlink(missing_ok=True)
    return *_registered(ctx, register_file(ctx.engine, final, settings, probed=probed)), final


def _register_path(ctx: ApiContext, raw: str) -> tuple[AssetOut, bool, Path | None]:
    real = resolve_registered(raw, ctx.settings)
    probed = sniff(real, Limits.of(ctx.settings))  # refuse what is not an image before the store records it
    return *_registered(ctx, register_file(ctx.engine, real, ctx.settings, probed=probed)), real


def _product(sku: str | None, title: str | None, brand: str | None, fields: str | None, alt_text: str | None,
             source_name: str | None, alt_text_limit: int) -> ProductIn:
    """The product data of a request, checked before the image is stored (a 422 keeps nothing)."""
    parsed: object = {}
    if fields is not None:
        try:
            parsed = json.loads(fields)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ApiProblem(422, "Invalid request", "fields: must be a JSON object of text values, e.g."
                             ' {"color": "red"}', code="invalid_request")
    try:
        product = ProductIn.model_validate({"sku": sku, "title": title, "brand": brand, "fields": parsed,
                                            "alt_text": alt_text, "source_name": source_name})
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
    if product.alt_text is not None and len(" ".join(product.alt_text.split())) > alt_text_limit:
        raise ApiProblem(422, "Text too long", f"alt_text: longer than {alt_text_limit} characters"
                         " (alt_text_limit)", code="text_too_long", limit=alt_text_limit)
    return product


def _save_product(ctx: ApiContext, fingerprint: str, product: ProductIn, path: Path | None) -> None:
    """The request's product data as the image's "api" row (replacing what an earlier request
    sent), its alt text as accepted human text, the client's file name on the file's path."""
    from catalogcap.products.importer import field_name
    from catalogcap.store.captions import import_human
    from catalogcap.store.models import PRODUCT_FIELDS, Product, utcnow

    with write_session(ctx.engine) as session:
        asset = session.exec(select(Asset).where(Asset.fingerprint == fingerprint)).first()
        if asset is None:
            return
        if product.source_name is not None:
            root = str(upload_root(ctx.settings).absolute()) + "/"
            for row in session.exec(select(AssetPath).where(AssetPath.asset_id == asset.id,
                                                            col(AssetPath.missing).is_(False))).all():
                if (path is not None and row.path == str(path)) or (path is None and row.path.startswith(root)):
                    row.source_name = product.source_name
                    session.add(row)
        if not product.has_product():
            return
        values: dict = {name: None for name in PRODUCT_FIELDS}
        values.update(sku=product.sku, title=product.title, brand=product.brand)
        others: dict[str, str] = {}
        for key, text in product.fields.items():
            name = field_name(key)
            if name in PRODUCT_FIELDS:
                values[name] = values[name] or text
            elif text.strip():
                others[name] = text
        now, key = utcnow(), f"api:{asset.id}"
        row = session.exec(select(Product).where(Product.key == key)).first() or Product(
            key=key, source="api", asset_id=asset.id, created_at=now)
        for name, value in values.items():
            setattr(row, name, value)
        row.fields, row.alt_text = dict(sorted(others.items())), product.alt_text
        row.origin, row.updated_at = "api", now
        session.add(row)
        session.flush()
        if product.alt_text:
            import_human(session, asset.id, "alt_text", product.alt_text, source="api",
                         alt_text_limit=ctx.settings.alt_text_limit, now=now)


@upload_router.post(
    "/v1/images", status_code=202, response_model=AssetOut,
    summary="Add an image: upload its bytes, or register a file on the server",
    responses={
        200: {"model": AssetOut, "description": "These bytes are known already: the existing image, no new job."},
        403: {"description": "Wrong scope, path registration off, or a path outside api.roots."},
        404: {"description": "The registered path does not exist."},
        413: {"description": "Over the byte or pixel budget."},
        415: {"description": "The bytes are not an accepted image type (whatever the file name says)."},
        422: {"description": "Neither or both of file and path, or an unreadable image."},
    },
    openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
        "oneOf": [{"required": ["file"]}, {"required": ["path"]}], "additionalProperties": False}}}}},
)
def add_image(
    response: Response,
    file: Annotated[UploadFile | None, File(description="The image bytes (review scope).")] = None,
    path: Annotated[str | None, Form(min_length=1, max_length=4096,
                                     description="Absolute path of a file under api.roots (admin scope).")] = None,
    sku: Annotated[str | None, Form(max_length=256, description="The product's SKU.")] = None,
    title: Annotated[str | None, Form(max_length=1000, description="The product's title.")] = None,
    brand: Annotated[str | None, Form(max_length=256, description="The product's brand.")] = None,
    fields: Annotated[str | None, Form(
        max_length=1_150_000, description="Other product fields: a JSON object of text values, e.g."
        ' {"color": "red", "material": "oak"} (at most 100 fields, values up to 10 KB).')] = None,
    alt_text: Annotated[str | None, Form(max_length=1000, description=(
        "Alt text a person wrote (at most alt_text_limit characters): the image's accepted alt text, never"
        " replaced by the model's."))] = None,
    source_name: Annotated[str | None, Form(max_length=255, description=(
        "Your own file name for the image (a name, not a path), kept for export matching."))] = None,
    token: ApiToken = Depends(auth.review),
    ctx: ApiContext = Depends(get_ctx),
) -> AssetOut:
    """Queue an image for captioning. Answers 202 with the new image, or 200 with the existing one
    when the same bytes were added before (by upload, path or a watched folder). Product data sent
    with it (`sku`, `title`, `brand`, `fields`, `alt_text`) is stored as the image's API product
    row, which outranks sidecars, plugins and imports; `source_name` is kept for export matching."""
    product = _product(sku, title, brand, fields, alt_text, source_name, ctx.settings.alt_text_limit)
    if (file is None) == (path is None):
        raise ApiProblem(422, "Give a file or a path",
                         "send exactly one multipart field: `file` (the bytes) or `path` (a file under api.roots)",
                         code="file_or_path")
    if path is not None:
        if not scope_allows(token.scope, "admin"):
            raise ApiProblem(403, "Insufficient scope", "registering a server path needs an admin token",
                             code="insufficient_scope")
        try:
            check_text(path)
        except (ValueError, UnicodeError):
            raise ApiProblem(422, "Invalid path", "the path is not valid UTF-8 text", code="invalid_request") from None
        out, created, kept = _register_path(ctx, path)
    else:
        out, created, kept = _upload(ctx, file)
    if product.has_product() or product.source_name is not None:
        _save_product(ctx, out.fingerprint, product, kept)
    if created:
        ctx.wake_worker()
    response.status_code = 202 if created else 200
    response.headers["Location"] = f"/v1/images/{out.fingerprint}"
    return out


def _snapshot(ctx: ApiContext, fingerprint: str) -> ImageCaptions:
    with read_session(ctx.engine) as session:
        asset = session.exec(select(Asset).where(Asset.fingerprint == fingerprint)).first()
        if asset is None:
            raise ApiProblem(404, "No such image", f"no image has fingerprint {fingerprint}", code="image_not_found")
        captions = session.exec(select(Caption).where(Caption.asset_id == asset.id).order_by(Caption.id)).all()
        path = primary_path(session, asset.id) if captions else None
        return ImageCaptions(image=AssetOut.of(asset, _latest_job(session, asset.id)),
                             captions=[CaptionOut.of(c, fingerprint, path) for c in captions])


async def _poll(request: Request, ctx: ApiContext, fingerprint: str, wait: float,
                ready: Callable[[ImageCaptions], bool]) -> ImageCaptions:
    """Re-read until `ready`, the wait is over or the client left; the database is the only
    channel, so captions written by `watch` in another process end the wait too."""
    deadline = time.monotonic() + min(wait, ctx.settings.api.max_wait_seconds)
    delay = 0.05
    while True:
        snap = await run_in_threadpool(_snapshot, ctx, fingerprint)
        remaining = deadline - time.monotonic()
        if ready(snap) or remaining <= 0 or await request.is_disconnected():
            return snap
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.25)


@router.get("/v1/images/{fingerprint}", response_model=AssetOut, responses=NOT_FOUND,
            summary="An image's state and its latest job")
async def get_image(request: Request, fingerprint: Fingerprint, wait: Wait = 0,
                    _token: ApiToken = Depends(auth.read), ctx: ApiContext = Depends(get_ctx)) -> AssetOut:
    """With `wait`, answers as soon as the image is no longer queued (captioned or rejected)."""
    snap = await _poll(request, ctx, fingerprint, wait, lambda s: s.image.state != "queued")
    return snap.image


@router.get("/v1/images/{fingerprint}/captions", response_model=ImageCaptions, responses=NOT_FOUND,
            summary="An image's captions")
async def get_image_captions(request: Request, fingerprint: Fingerprint, wait: Wait = 0,
                             _token: ApiToken = Depends(auth.read),
                             ctx: ApiContext = Depends(get_ctx)) -> ImageCaptions:
    """With `wait`, answers as soon as captions exist or the image is rejected."""
    return await _poll(request, ctx, fingerprint, wait,
                       lambda s: bool(s.captions) or s.image.state == "rejected")
