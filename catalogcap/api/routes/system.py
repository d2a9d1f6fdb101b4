"""Adapters, status, health and Prometheus metrics."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse
from sqlmodel import col, select

from catalogcap.api import auth
from catalogcap.api.context import ApiContext, get_ctx
from catalogcap.api.metrics import CONTENT_TYPE
from catalogcap.api.problems import ApiProblem
from catalogcap.api.schemas import AdapterOut, Health, StatusOut, WorkerOut
from catalogcap.status import store_status
from catalogcap.store.database import read_session
from catalogcap.store.models import Adapter, ApiToken

router = APIRouter()


@router.get("/v1/adapters", response_model=list[AdapterOut], tags=["adapters"],
            summary="LoRA adapters in the registry, newest first")
def list_adapters(_token: ApiToken = Depends(auth.read), ctx: ApiContext = Depends(get_ctx)) -> list[AdapterOut]:
    with read_session(ctx.engine) as session:
        rows = session.exec(select(Adapter).order_by(col(Adapter.created_at).desc(), Adapter.id)).all()
    return [AdapterOut.of(adapter) for adapter in rows]


def _worker(ctx: ApiContext) -> WorkerOut:
    worker = ctx.worker
    if worker is None:
        return WorkerOut(running=False, captioned=0, errors=0)
    return WorkerOut(running=worker.running, captioned=worker.captioned, errors=worker.errors)


@router.get("/v1/status", response_model=StatusOut, tags=["system"],
            summary="Images, captions by state, the queue, the active adapter")
def status(_token: ApiToken = Depends(auth.read), ctx: ApiContext = Depends(get_ctx)) -> StatusOut:
    data = store_status(ctx.engine)
    return StatusOut(**data, model=ctx.settings.model, worker=_worker(ctx))


@router.get("/healthz", response_model=Health, tags=["system"], summary="Liveness: the store answers",
            responses={503: {"description": "The database cannot be reached."}})
def healthz(ctx: ApiContext = Depends(get_ctx)) -> Health:
    """The only endpoint without a token; it tells nothing but ok."""
    try:
        with ctx.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError:
        raise ApiProblem(503, "Store unavailable", "the database does not answer", code="store_unavailable",
                         headers={"Retry-After": "5"}) from None
    return Health(status="ok")


@router.get("/metrics", response_class=PlainTextResponse, tags=["system"],
            summary="Prometheus metrics (text exposition format 0.0.4)")
def metrics(_token: ApiToken = Depends(auth.read), ctx: ApiContext = Depends(get_ctx)) -> PlainTextResponse:
    ctx.metrics.watch_store(ctx.engine, lambda: store_status(ctx.engine),
                            worker_captioned=lambda: ctx.worker.captioned if ctx.worker else 0,
                            plugin_failures=ctx.plugin_failures)
    return PlainTextResponse(ctx.metrics.render(), media_type=CONTENT_TYPE)
