"""The FastAPI application: routes, tokens, problem details, limits, metrics, the worker thread."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi_offline import FastAPIOffline
from sqlalchemy.engine import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from catalogcap.api import auth, problems
from catalogcap.api.background import BackgroundWorker
from catalogcap.api.context import ApiContext
from catalogcap.api.metrics import Metrics, RequestMetrics
from catalogcap.api.routes import captions, images, system
from catalogcap.api.uploads import BodyLimit, Limits
from catalogcap.settings import Settings

JSON_BODY_LIMIT = 64 * 1024  # a review decision is a few hundred bytes
MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around an upload
DOCS_STATIC = "/docs-static"  # Swagger UI's scripts and styles
DESCRIPTION = """\
Send product images, wait for their alt text and description, review them, and sync the
results into a catalog. The same store and queue as `catalogcap watch`.

Every endpoint but `/healthz` needs `Authorization: Bearer <token>`; make one with
`catalogcap tokens create --name NAME --scope read|review|admin`. Scopes: **read** reads
everything; **review** also uploads images and decides captions; **admin** also registers
files already on the server by path. Errors are `application/problem+json` (RFC 9457)
with a stable `code`.
"""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("catalogcap")
    except PackageNotFoundError:
        return "dev"


class SecurityHeaders:
    """No MIME sniffing by browsers, no caching of answers that carry catalog data."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers.append((b"x-content-type-options", b"nosniff"))
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(settings: Settings, engine: Engine | None = None, *, run_worker: bool | None = None,
               hooks: Any = None, worker: BackgroundWorker | None = None) -> FastAPI:
    """The API over `settings`' store. With `run_worker` (default: api.worker) a captioning thread
    starts and stops with the app; `worker` hands in a ready one (tests)."""
    if engine is None:
        from catalogcap.store.database import create_store_engine

        engine = create_store_engine(settings.db_url)
    ctx = ApiContext(engine=engine, settings=settings, metrics=Metrics(), hooks=hooks)
    if ctx.hooks is None:
        from catalogcap.plugins import hooks_for

        ctx.hooks = hooks_for(ctx)  # the context has the .engine and .settings hooks_for reads
    run_worker = settings.api.worker if run_worker is None else run_worker

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if run_worker or worker is not None:
            ctx.worker = worker or BackgroundWorker(engine, settings, on_captions=ctx.hooks.captions_created)
            await run_in_threadpool(ctx.worker.start)
        try:
            yield
        finally:
            if ctx.worker is not None:
                await run_in_threadpool(ctx.worker.stop)

    public = settings.api.public_docs
    meta: dict[str, Any] = {"title": "catalogcap", "version": _version(), "description": DESCRIPTION,
                            "lifespan": lifespan, "redoc_url": None}
    if public:
        # Swagger UI served from the fastapi-offline package, not a CDN: /docs works offline too
        app = FastAPIOffline(docs_url="/docs", static_url=DOCS_STATIC, openapi_url="/openapi.json", **meta)
    else:
        app = FastAPI(docs_url=None, openapi_url=None, **meta)
    app.state.ctx = ctx
    problems.install(app)
    # text parts: `path` and the product data (sku, title, brand, fields, alt_text, source_name); `fields`
    # may hold 100 values of 10 KB, so a text part may be a little over 1 MB
    app.include_router(images.upload_router, form_limits={"max_files": 1, "max_fields": 7,
                                                          "max_part_size": 1_200_000})
    app.include_router(images.router)
    app.include_router(captions.router)
    app.include_router(system.router)
    if not public:
        @app.get("/openapi.json", include_in_schema=False)
        def openapi(_token: Any = Depends(auth.read)) -> dict[str, Any]:
            return app.openapi()

    public_paths = {"/healthz", *(("/docs", "/docs/oauth2-redirect", "/openapi.json", DOCS_STATIC + "/")
                                  if public else ())}
    app.add_middleware(BodyLimit, upload_bytes=Limits.of(settings).max_bytes + MULTIPART_SLACK,
                       other_bytes=JSON_BODY_LIMIT)
    app.add_middleware(auth.BearerGate, engine=engine, public=public_paths)
    app.add_middleware(RequestMetrics, metrics=ctx.metrics)
    app.add_middleware(SecurityHeaders)
    return app
