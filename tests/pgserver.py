"""A throw-away PostgreSQL server for the tests: `initdb` + `pg_ctl` as the unprivileged
`postgres` user in a temp folder, listening on a unix socket only, stopped at the end."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import sqlalchemy as sa

USER = "postgres"


def find_bindir() -> Path | None:
    """The folder holding initdb and pg_ctl (Debian keeps them out of PATH)."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


def why_not() -> str | None:
    """The reason a server cannot be started here, or None when it can."""
    if find_bindir() is None:
        return "PostgreSQL is not installed (initdb/pg_ctl not found; Debian: apt-get install postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the psycopg driver is not installed (pip install 'catalogcap[postgres]')"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser, so initdb cannot run as an unprivileged user"
    try:
        import pwd

        pwd.getpwnam(USER)
    except KeyError:
        if os.geteuid() == 0:
            return f"no unprivileged user {USER!r} to run the server as"
    return None


class Server:
    """One running cluster; `url(db)` names a database on it."""

    def __init__(self) -> None:
        bindir = find_bindir()
        assert bindir is not None
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="catalogcap-pg-"))
        self.data = self.root / "data"
        self.socket = self.root / "sock"
        self.socket.mkdir()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, USER)
            shutil.chown(self.socket, USER)
        self.role = USER if self.as_root else os.environ.get("USER") or "postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", USER, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> None:
        done = self._run("initdb", "-D", str(self.data), "-U", self.role, "-A", "trust", "-E", "UTF8",
                         "--no-sync", "--no-instructions")
        if done.returncode:
            raise RuntimeError(f"initdb failed: {done.stderr or done.stdout}")
        options = (f"-c listen_addresses='' -c unix_socket_directories={self.socket} -c fsync=off"
                   " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c timezone=UTC")
        done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options, "-w",
                         "-t", "60", "start")
        if done.returncode:
            log = (self.root / "log").read_text(errors="replace") if (self.root / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {done.stderr or done.stdout}\n{log}")

    def restart(self) -> None:
        """Stop (fast: every client connection is cut) and start again, as a database restart does."""
        done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-m", "fast", "-w", "-t", "60",
                         "restart")
        if done.returncode:
            raise RuntimeError(f"pg_ctl restart failed: {done.stderr or done.stdout}")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.role}@/{database}?host={self.socket}"

    def create_database(self, prefix: str = "t", template: str | None = None) -> str:
        """A fresh database, empty or a copy of the one the URL `template` names (CREATE DATABASE
        ... TEMPLATE, a file copy: nothing may be connected to the source); returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        copy = f' TEMPLATE "{sa.engine.make_url(template).database}"' if template else ""
        admin = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"{copy}')
        finally:
            admin.dispose()
        return self.url(name)
