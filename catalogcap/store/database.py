"""Opening the store: engine, SQLite pragmas, migrations to the newest schema, sessions.

SQLite runs in WAL mode with a busy timeout so the daemon, the review UI and the API can
share one file; write transactions start with BEGIN IMMEDIATE so two writers queue on the
lock instead of failing half-way. Any other SQLAlchemy URL (PostgreSQL) works unchanged.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlmodel import Session

from catalogcap.errors import StoreError

BUSY_TIMEOUT_MS = 30_000
_migrate_lock = threading.Lock()


def _alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", "catalogcap.store:migrations")
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(_alembic_config(sa.create_engine("sqlite://"))).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _sqlite_begin)
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
    mode = conn.info.pop("begin_mode", None) or conn.get_execution_options().get("begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def create_store_engine(url: str, *, migrate: bool = True) -> Engine:
    """An engine for `url`, upgraded to the newest schema unless migrate=False."""
    try:
        engine_url = sa.engine.make_url(url)
    except Exception as exc:
        raise StoreError(f"database URL {url!r} is not a valid SQLAlchemy URL: {exc}") from None
    kwargs: dict = {"pool_pre_ping": True}
    if engine_url.get_backend_name() == "sqlite":
        if engine_url.database and engine_url.database != ":memory:":
            parent = Path(engine_url.database).expanduser().parent
            if not parent.is_dir():
                raise StoreError(f"database folder {parent} does not exist; run `catalogcap init`")
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    try:
        engine = sa.create_engine(engine_url, **kwargs)
    except Exception as exc:  # missing driver (psycopg) etc.
        raise StoreError(f"cannot open database {engine_url.render_as_string()}: {exc}") from None
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
    if migrate:
        upgrade(engine)
    return engine


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`, in place; safe to call on every start."""
    head = head_revision()
    try:
        current = current_revision(engine)
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"cannot read database {engine.url.render_as_string()}: {exc}") from None
    if current == head and revision == "head":
        return
    script = ScriptDirectory.from_config(_alembic_config(engine))
    if current is not None and not _known(script, current):
        raise StoreError(
            f"database {engine.url.render_as_string()} is at schema {current}, which this catalogcap does not"
            " know; it was written by a newer release — upgrade catalogcap"
        )
    with _migrate_lock:
        command.upgrade(_alembic_config(engine), revision)


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except Exception:  # alembic raises CommandError/ResolutionError for unknown ids
        return False


@contextlib.contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session whose transaction takes the write lock up front (SQLite BEGIN IMMEDIATE)
    and commits on success, rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        if engine.dialect.name == "sqlite":
            session.connection(execution_options={"begin": "IMMEDIATE"})
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextlib.contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session
