"""Errors as RFC 9457 problem details (`application/problem+json`), never a stack trace.

Every error body has `type`, `title`, `status`, `detail` and a stable machine-readable
`code`; some add fields (`errors` for validation, `current_version` for a conflict).
The OpenAPI document is rewritten so every 4xx/5xx response says exactly that.
"""

from __future__ import annotations

import logging
import uuid
from http import HTTPStatus
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from catalogcap.errors import CatalogcapError, NotFound, StoreError
from catalogcap.store.captions import Conflict, TextTooLong
from catalogcap.store.database import StoreBusy, StoreFull, store_error

log = logging.getLogger("catalogcap.api")
MEDIA_TYPE = "application/problem+json"


class Issue(BaseModel):
    loc: list[str | int] = Field(description="Where in the request: body, query, path or header, then the field.")
    msg: str
    type: str


class Problem(BaseModel):
    """An error (RFC 9457 problem details)."""

    model_config = ConfigDict(extra="allow")
    type: str = Field("about:blank", description="A URI naming the problem type; about:blank for plain HTTP.")
    title: str = Field(description="A short summary of the problem type.")
    status: int = Field(description="The HTTP status code.")
    detail: str | None = Field(None, description="What happened in this case, and what to do.")
    code: str = Field(description="A stable machine-readable name of the problem, e.g. conflict, not_an_image.")
    instance: str | None = Field(None, description="An id of this occurrence (logged server-side).")
    errors: list[Issue] | None = Field(None, description="Validation problems, one per bad field.")


class ApiProblem(Exception):
    """Raised by routes to answer with a problem; extra keyword fields become extension members."""

    def __init__(self, status: int, title: str, detail: str | None = None, *, code: str,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.code = status, title, detail, code
        self.headers = headers or {}
        self.extra = extra


def problem_response(status: int, title: str, detail: str | None, code: str, *,
                     headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "code": code}
    if detail:
        body["detail"] = detail
    body.update({key: value for key, value in extra.items() if value is not None})
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


_RFC9110_NAMES = {413: "Content Too Large", 422: "Unprocessable Content"}  # older Pythons use the RFC 7231 names


def _phrase(status: int) -> str:
    if status in _RFC9110_NAMES:
        return _RFC9110_NAMES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _api_problem(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiProblem)
    return problem_response(exc.status, exc.title, exc.detail, exc.code, headers=exc.headers, **exc.extra)


async def _http_exception(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = _phrase(exc.status_code)
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
    code = title.lower().replace(" ", "_").replace("-", "_")
    return problem_response(exc.status_code, title, detail, code, headers=dict(exc.headers or {}))


async def _validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Inputs are not echoed back: they may be large, binary or secret.
    issues = [{"loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
               "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in exc.errors()]
    if issues and all(i["type"] == "missing" and [str(p).lower() for p in i["loc"]] == ["header", "if-match"]
                      for i in issues):
        return problem_response(428, "Precondition required", "send If-Match with the caption version you saw"
                                " (its ETag), so a decision never overwrites someone else's", "if_match_missing")
    detail = "; ".join(f"{'.'.join(map(str, i['loc']))}: {i['msg']}" for i in issues[:5])
    return problem_response(422, "Invalid request", detail, "invalid_request", errors=issues)


async def _catalogcap_error(_request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, Conflict):  # its caption row is expired by the rollback: only the message is safe
        return problem_response(409, "Conflict", str(exc), "conflict")
    if isinstance(exc, NotFound):
        return problem_response(404, "Not found", str(exc), "not_found")
    if isinstance(exc, TextTooLong):
        return problem_response(422, "Text too long", str(exc), "text_too_long", limit=exc.limit)
    if isinstance(exc, (StoreBusy, StoreFull)):
        return unavailable(exc)
    if isinstance(exc, StoreError):
        log.error("store unavailable: %s", exc)
        return problem_response(503, "Store unavailable", "the database cannot be used right now; retry later",
                                "store_unavailable", headers={"Retry-After": "5"})
    return problem_response(422, "Cannot do that", str(exc), "rejected")


def unavailable(error: StoreBusy | StoreFull) -> JSONResponse:
    """503 with Retry-After: the store is locked by another writer, or its disk is full."""
    busy = isinstance(error, StoreBusy)
    log.warning("store unavailable: %s", error)
    detail = ("the database is busy with another writer; retry shortly" if busy
              else "the server's disk is full; retry once an operator has freed space")
    return problem_response(503, "Store unavailable", detail, "store_busy" if busy else "store_full",
                            headers={"Retry-After": "5" if busy else "60"})


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """A locked store (a long write elsewhere) or a full disk is temporary: 503 and Retry-After, not 500."""
    known = store_error(exc)
    if isinstance(known, (StoreBusy, StoreFull)):
        return unavailable(known)
    return await _unexpected(request, exc)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    incident = uuid.uuid4().hex
    log.error("unexpected error %s on %s %s", incident, request.method, request.url.path,
              exc_info=(type(exc), exc, exc.__traceback__))
    return problem_response(500, "Internal server error", "the server met an unexpected error; it is logged"
                            " under the instance id", "internal_error", instance=f"urn:uuid:{incident}")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiProblem, _api_problem)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(CatalogcapError, _catalogcap_error)
    app.add_exception_handler(sa.exc.DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with every error response described as a Problem."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                      tags=app.openapi_tags)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    ref = {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path_item in doc.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            if operation.get("security"):
                responses.setdefault("401", {"description": "No valid bearer token."})
                responses.setdefault("403", {"description": "The token's scope does not allow this."})
            if "requestBody" in operation:
                responses.setdefault("400", {"description": "The body cannot be parsed."})
            for status, response in responses.items():
                if status[0] in "45":
                    response["content"] = ref
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    app.openapi_schema = doc
    return doc
