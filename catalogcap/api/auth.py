"""Bearer-token authentication and scopes: read < review < admin.

read: every GET (images, captions, adapters, status, metrics). review: also upload
images and decide captions. admin: also register files by server path.

`BearerGate` checks the token before anything else happens, so an anonymous client can
make the server parse no body (a 50 MB upload is refused before it is read) and learns
nothing about which routes exist. `require(scope)` then checks the scope per route and
declares the bearer scheme in the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import sqlalchemy as sa
from fastapi import Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from catalogcap.api.problems import ApiProblem, problem_response, unavailable
from catalogcap.api.tokens import scope_allows, verify_token
from catalogcap.store.database import StoreBusy, StoreFull, store_error
from catalogcap.store.models import ApiToken

bearer = HTTPBearer(
    auto_error=False,
    description="A token from `catalogcap tokens create --name NAME --scope read|review|admin`.",
)


def _challenge(error: str | None = None, scope: str | None = None) -> dict[str, str]:
    value = 'Bearer realm="catalogcap"'
    if error:
        value += f', error="{error}"'
    if scope:
        value += f', scope="{scope}"'
    return {"WWW-Authenticate": value}


class BearerGate:
    """ASGI middleware: every path but the public ones needs a live token, checked up front.

    A public path ending in ``/`` is a prefix (the docs' static files); the others match exactly.
    """

    def __init__(self, app: ASGIApp, engine: Engine, public: Iterable[str]) -> None:
        self.app = app
        self.engine = engine
        self.public = frozenset(public)
        self.public_prefixes = tuple(path for path in self.public if path.endswith("/"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.public or scope["path"].startswith(self.public_prefixes):
            await self.app(scope, receive, send)
            return
        scheme, _, credentials = (Headers(scope=scope).get("authorization") or "").partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            response = problem_response(401, "Authentication required",
                                        "send `Authorization: Bearer <token>`; `catalogcap tokens create` makes one",
                                        "token_missing", headers=_challenge())
            await response(scope, receive, send)
            return
        try:
            token = await run_in_threadpool(verify_token, self.engine, credentials)
        except sa.exc.DBAPIError as exc:  # the token check writes last_used_at: a locked store is 503 too
            known = store_error(exc)
            if not isinstance(known, (StoreBusy, StoreFull)):
                raise
            await unavailable(known)(scope, receive, send)
            return
        if token is None:
            response = problem_response(401, "Invalid token", "the token is unknown, malformed or revoked",
                                        "token_invalid", headers=_challenge("invalid_token"))
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["token"] = token
        await self.app(scope, receive, send)


def require(scope: str) -> Callable[..., object]:
    """A dependency that lets the request through when the gate's token has at least `scope`."""

    async def dependency(request: Request,
                         _credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> ApiToken:
        token: ApiToken | None = getattr(request.state, "token", None)
        if token is None:  # only when the app runs without its gate
            raise ApiProblem(401, "Authentication required", code="token_missing", headers=_challenge())
        if not scope_allows(token.scope, scope):
            raise ApiProblem(403, "Insufficient scope",
                             f"token {token.id} ({token.name}) has scope {token.scope!r}; this needs {scope!r}",
                             code="insufficient_scope", headers=_challenge("insufficient_scope", scope))
        return token

    return dependency


read = require("read")
review = require("review")
admin = require("admin")
