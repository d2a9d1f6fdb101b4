"""API tokens: create (the secret is shown once), verify, list, revoke.

A token reads `ccap_<id>_<secret>`: the id is public (listings, logs, revocation), the
secret is 256 random bits. Only the sha256 of the whole token is stored; a plain hash is
enough because the secret is random, not a password, so there is nothing to brute-force.
Importable without FastAPI: the CLI manages tokens on machines that never serve.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from catalogcap.errors import CatalogcapError, NotFound
from catalogcap.store.database import read_session, write_session
from catalogcap.store.models import ApiToken, utcnow

PREFIX = "ccap"
SCOPES = ("read", "review", "admin")  # each includes the ones before it
LAST_USED_EVERY = timedelta(minutes=1)  # last_used_at is a hint; don't take the write lock per request
_DUMMY_HASH = hashlib.sha256(b"no such token").hexdigest()


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    secret: str  # the full bearer token; never stored, shown once


def scope_allows(granted: str, needed: str) -> bool:
    return SCOPES.index(granted) >= SCOPES.index(needed)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(engine: Engine, name: str, scope: str) -> NewToken:
    name = name.strip()
    if not name or len(name) > 128:
        raise CatalogcapError("a token needs a name of 1 to 128 characters (who or what uses it)")
    if scope not in SCOPES:
        raise CatalogcapError(f"unknown scope {scope!r}; use one of {', '.join(SCOPES)}")
    token_id = secrets.token_hex(6)
    secret = f"{PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
    row = ApiToken(id=token_id, name=name, scope=scope, token_hash=_hash(secret), created_at=utcnow())
    with write_session(engine) as session:
        session.add(row)
    return NewToken(row, secret)


def parse_id(secret: str) -> str | None:
    """The public id of a well-formed token, else None."""
    prefix, _, rest = secret.partition("_")
    token_id, _, body = rest.partition("_")
    if prefix != PREFIX or len(token_id) != 12 or not body:
        return None
    return token_id if all(c in "0123456789abcdef" for c in token_id) else None


def verify_token(engine: Engine, secret: str, *, now: datetime | None = None) -> ApiToken | None:
    """The live token matching `secret`, or None (unknown, malformed or revoked)."""
    token_id = parse_id(secret)
    with read_session(engine) as session:
        row = session.get(ApiToken, token_id) if token_id else None
    expected = row.token_hash if row is not None else _DUMMY_HASH
    if not hmac.compare_digest(_hash(secret), expected) or row is None or row.revoked_at is not None:
        return None
    now = now or utcnow()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_EVERY:
        with write_session(engine) as session:
            fresh = session.get(ApiToken, row.id)
            if fresh is not None:
                fresh.last_used_at = now
                session.add(fresh)
    return row


def list_tokens(engine: Engine, *, include_revoked: bool = True) -> list[ApiToken]:
    with read_session(engine) as session:
        query = select(ApiToken).order_by(ApiToken.created_at, ApiToken.id)
        if not include_revoked:
            query = query.where(col(ApiToken.revoked_at).is_(None))
        return list(session.exec(query).all())


def revoke_token(engine: Engine, id_or_name: str) -> ApiToken:
    """Revoke by public id, or by name when exactly one live token has it."""
    with write_session(engine) as session:
        row = session.get(ApiToken, id_or_name)
        if row is None:
            named = session.exec(
                select(ApiToken).where(ApiToken.name == id_or_name, col(ApiToken.revoked_at).is_(None))
            ).all()
            if len(named) > 1:
                ids = ", ".join(t.id for t in named)
                raise CatalogcapError(f"{len(named)} live tokens are named {id_or_name!r} ({ids}); revoke by id")
            row = named[0] if named else None
        if row is None:
            raise NotFound(f"no token with id or name {id_or_name!r}; `catalogcap tokens list` shows them")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            session.add(row)
    return row
