"""Opening the store: engine, SQLite pragmas, migrations to the newest schema, sessions.

SQLite runs in WAL mode with a busy timeout so the daemon, the review UI and the API can
share one file; write transactions start with BEGIN IMMEDIATE so two writers queue on the
lock instead of failing half-way. On PostgreSQL (`postgresql+psycopg://`, tested against a
real server) a connection gives up after `CONNECT_TIMEOUT_S` and schema upgrades take an
advisory lock, so workers started together on a new database migrate it once.

A database error a user can meet (a damaged file, a full disk, a lock held past the busy
timeout) becomes a `StoreError` subclass through `store_error`, which says what happened
to which file and what to do; the URL is always shown with its password hidden.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from catalogcap import redact
from catalogcap.errors import StoreError

BUSY_TIMEOUT_MS = 30_000
# seconds a PostgreSQL connection may take to open (libpq's connect_timeout, unless the URL sets
# one): a wrong host or a firewall that drops packets is an error in seconds, not a hang
CONNECT_TIMEOUT_S = 5
_migrate_lock = threading.Lock()
MIGRATION_LOCK_KEY = 0x6361_7463_6170  # pg_advisory_lock key of schema upgrades ("catcap")
ADAPTERS_LOCK_KEY = 0x6361_7463_6164  # changes of which adapter is active ("catcad")
RECOVERY_HINT = ("stop every catalogcap process, copy the file aside, then recover what can be read:"
                 " `sqlite3 {path} .recover | sqlite3 {path}.recovered` and move the recovered file into"
                 " place (README: \"Backups and recovery\")")


class StoreBusy(StoreError):
    """Another process held the database's write lock for longer than the busy timeout."""


class StoreFull(StoreError):
    """The disk (or the database's size limit) is full; the transaction was rolled back."""


class StoreCorrupt(StoreError):
    """The database file is damaged or is not a database."""


def _where(url: str | sa.engine.URL | None) -> str:
    if url is None:
        return "the database"
    if isinstance(url, sa.engine.URL):
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            return f"database {url.database}"
        return f"database {url.render_as_string(hide_password=True)}"
    try:
        return _where(sa.engine.make_url(url))
    except Exception:  # unparseable: shown by the same grammar, password hidden
        return f"database {redact.database_url(url)}"


def store_error(exc: BaseException, url: str | sa.engine.URL | None = None) -> StoreError | None:
    """The user-facing error for a database exception, or None when it is not one a user can act on."""
    orig = getattr(exc, "orig", None) or exc
    if not isinstance(orig, (sqlite3.Error, sa.exc.DBAPIError)) and not isinstance(exc, sa.exc.DBAPIError):
        return None
    message = str(orig).splitlines()[0] if str(orig) else type(orig).__name__
    lowered = message.lower()
    where = _where(url)
    if "locked" in lowered or "busy" in lowered:
        return StoreBusy(f"{where} is busy: another process kept it locked longer than the busy timeout"
                         f" ({message}); try again in a moment")
    if "disk is full" in lowered or "no space left" in lowered or "sqlite_full" in lowered:
        return StoreFull(f"{where}: the disk is full ({message}); nothing was saved by this step;"
                         " free some space and run it again")
    if "malformed" in lowered or "not a database" in lowered or "disk i/o error" in lowered:
        path = where.removeprefix("database ")
        return StoreCorrupt(f"{where} is damaged ({message}); {RECOVERY_HINT.format(path=path)}")
    return None


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "catalogcap.store:migrations")
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(sa.create_engine("sqlite://"))).get_current_head()


def numbered_head() -> str:
    """The newest migration by file name (they are numbered in order: 0001_..., 0002_...): the
    head without importing alembic, so a command on an up-to-date store starts faster. A test
    checks it against alembic's own `head_revision`."""
    versions = Path(__file__).with_name("migrations") / "versions"
    return max(p.name.split("_", 1)[0] for p in versions.glob("[0-9][0-9][0-9][0-9]_*.py"))


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _unreadable(exc: BaseException, engine: Engine) -> StoreError:
    """The one-line error for a store that cannot be reached or read (password never shown)."""
    known = store_error(exc, engine.url)
    if known is not None:
        return known
    message = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    return StoreError(f"cannot read {_where(engine.url)}: {redact.text(message)}")


def _up_to_date(engine: Engine) -> bool:
    """Whether the store is at the newest schema, read with one plain query (False when it
    cannot tell, e.g. a new database: `upgrade` then takes the full path)."""
    with engine.connect() as conn:  # a store that cannot be reached raises here, once: `upgrade` says so
        try:
            rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        except (sa.exc.SQLAlchemyError, sqlite3.Error):
            return False  # no version table yet (a new store), or unreadable: the full path tells which
    return [row[0] for row in rows] == [numbered_head()]


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def json_serializer(value: Any) -> str:
    """The text of a JSON column, the same on every backend: a float that is not finite (a
    diverged training loss, a metric of nothing) is written as null. PostgreSQL's json type
    refuses NaN and Infinity (JSON has no such values), so a round whose metrics held one
    failed there while SQLite stored it."""
    return json.dumps(_finite(value), allow_nan=False)


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
    except Exception:  # the parser's message repeats the URL, password and all
        raise StoreError(f"database URL {redact.database_url(url)} is not a valid SQLAlchemy URL"
                         " (dialect+driver://user:password@host:port/database; percent-encode special"
                         " characters of the password)") from None
    kwargs: dict = {"pool_pre_ping": True, "json_serializer": json_serializer}
    if engine_url.get_backend_name() == "sqlite":
        if engine_url.database and engine_url.database != ":memory:":
            file = Path(engine_url.database).expanduser()
            if not file.parent.is_dir():
                raise StoreError(f"database folder {file.parent} does not exist; run `catalogcap init`")
            _refuse_empty_file(file)
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    elif engine_url.get_backend_name() == "postgresql" and "connect_timeout" not in engine_url.query:
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    try:
        engine = sa.create_engine(engine_url, **kwargs)
    except Exception as exc:  # missing driver (psycopg) etc.
        raise StoreError(f"cannot open {_where(engine_url)}: {redact.text(str(exc))}") from None
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
    if migrate:
        upgrade(engine)
    return engine


def _refuse_empty_file(file: Path) -> None:
    """An existing 0-byte file is a store that lost its contents (a failed copy, a full disk),
    not a new one: opening it would build an empty store and caption the whole catalog again."""
    try:
        empty = file.stat().st_size == 0
    except FileNotFoundError:
        return
    wal = file.with_name(file.name + "-wal")
    if empty and not (wal.exists() and wal.stat().st_size > 0):
        raise StoreError(
            f"database {file} exists but is empty (0 bytes), so it is not opened as a new store: restore it"
            " from a backup (README: \"Backups and recovery\"), or delete the file to start an empty store"
            " (every image is then captioned again)"
        )


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`, in place; safe to call on every start."""
    try:
        if revision == "head" and _up_to_date(engine):
            return  # the common start: one query, alembic not even imported
    except (sa.exc.SQLAlchemyError, sqlite3.Error) as exc:
        raise _unreadable(exc, engine) from None
    from alembic import command
    from alembic.script import ScriptDirectory

    head = head_revision()
    try:
        current = current_revision(engine)
    except (sa.exc.SQLAlchemyError, sqlite3.Error) as exc:
        raise _unreadable(exc, engine) from None
    if current == head and revision == "head":
        return
    script = ScriptDirectory.from_config(_alembic_config(engine))
    if current is not None and not _known(script, current):
        raise StoreError(
            f"{_where(engine.url)} is at schema {current}, which this catalogcap does not"
            " know; it was written by a newer release — upgrade catalogcap"
        )
    with _migrate_lock, _migration_lock(engine):
        try:
            if current_revision(engine) == head and revision == "head":
                return  # another process upgraded it while we waited for the lock
            command.upgrade(_alembic_config(engine), revision)
        except (sa.exc.DBAPIError, sqlite3.Error) as exc:
            raise (store_error(exc, engine.url) or exc) from None


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """On PostgreSQL, one process at a time migrates (an advisory lock held on its own
    connection): several workers started at once on a new database would otherwise all
    create the same tables."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
        try:
            yield
        finally:
            conn.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")


def _known(script: Any, revision: str) -> bool:
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


def serialize(session: Session, key: int) -> None:
    """Make the rest of `session`'s transaction run one at a time with every other transaction that
    calls this with `key`. SQLite's write sessions already do (BEGIN IMMEDIATE); PostgreSQL
    takes a transaction-level advisory lock, released at commit or rollback. For changes that
    read and then write a set of rows (which adapter is active), where row locks alone do not
    keep two transactions from each deciding on a snapshot the other is changing."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection().exec_driver_sql(f"SELECT pg_advisory_xact_lock({int(key)})")


@contextlib.contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session
