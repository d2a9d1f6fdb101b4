"""The captioning queue in the database: enqueue, atomic batch claims, leases, retries.

A claim is one `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT n)
RETURNING` statement: on PostgreSQL many workers claim disjoint batches without waiting
on each other; on SQLite the statement runs under BEGIN IMMEDIATE, which serialises
writers. Every claim takes a lease; a worker that dies leaves jobs whose lease expires
(or whose owner process is gone), and those go back to pending.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from catalogcap.errors import NotFound
from catalogcap.store.database import write_session
from catalogcap.store.models import JOB_STATES, Asset, Job, utcnow

_OWNERS: set[str] = set()  # the owner ids this process made
CHANNEL = "catalogcap_jobs"  # PostgreSQL LISTEN/NOTIFY channel: a job became runnable


def notify_queued(session: Session) -> None:
    """Wake idle workers listening on PostgreSQL (sent when the transaction commits; several
    in one transaction arrive as one). Elsewhere workers poll, so this does nothing."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


def new_owner(role: str = "worker") -> str:
    """A lease owner id: host, pid and a random part, so a dead pid on this host is detectable."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{role}:{uuid.uuid4().hex[:8]}"
    _OWNERS.add(owner)
    return owner


def _owner_gone(owner: str, host: str) -> bool:
    """Whether `owner` was a process on this host that no longer runs. A container restarted
    with the same host name often reuses the pid (1, say): an id with our pid that this
    process did not make belongs to the previous process."""
    owner_host, _, rest = owner.partition(":")
    pid_text = rest.split(":", 1)[0]
    if owner_host != host or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return owner not in _OWNERS
    return not pid_alive(pid)


@dataclass(frozen=True)
class Claimed:
    job_id: int
    asset_id: int
    attempts: int


def enqueue(session: Session, asset_id: int, *, now: datetime | None = None) -> Job:
    """Queue a captioning job for the asset unless one is already pending or running."""
    active = session.exec(
        select(Job).where(Job.asset_id == asset_id, col(Job.state).in_(("pending", "running")))
    ).first()
    if active is not None:
        return active
    now = now or utcnow()
    job = Job(asset_id=asset_id, state="pending", run_after=now, created_at=now, updated_at=now)
    try:
        with session.begin_nested():
            session.add(job)
    except sa.exc.IntegrityError:  # another writer queued it between our read and insert
        return session.exec(
            select(Job).where(Job.asset_id == asset_id, col(Job.state).in_(("pending", "running")))
        ).one()
    notify_queued(session)
    return job


def _runnable(now: datetime) -> sa.ColumnElement[bool]:
    """What a claim may take: pending jobs due now, and running jobs whose lease ran out (their
    worker was frozen or killed). `claim` and `runnable_count` share it, so an idle worker
    that counts nothing to do never leaves an expired lease unclaimed."""
    return sa.or_(
        sa.and_(Job.state == "pending", Job.run_after <= now),
        sa.and_(Job.state == "running", Job.lease_expires < now),
    )


def claim(
    engine: Engine, owner: str, limit: int, *, lease_seconds: float, now: datetime | None = None,
    job_ids: list[int] | None = None,
) -> list[Claimed]:
    """Atomically take up to `limit` runnable jobs (oldest first) under a lease for `owner`;
    with `job_ids`, only those of them still runnable (a backfill's planned batch: a job another
    worker took or finished meanwhile is skipped, so nothing is captioned twice)."""
    now = now or utcnow()
    where = [_runnable(now)]
    if job_ids is not None:
        if not job_ids:
            return []
        where.append(col(Job.id).in_(list(job_ids)))
    runnable = (
        select(Job.id)
        .where(*where)
        .order_by(Job.run_after, Job.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = (
        sa.update(Job)
        .where(col(Job.id).in_(runnable), col(Job.state).in_(("pending", "running")))
        .values(
            state="running",
            lease_owner=owner,
            lease_expires=now + timedelta(seconds=lease_seconds),
            attempts=Job.attempts + 1,
            updated_at=now,
        )
        .returning(Job.id, Job.asset_id, Job.attempts)
    )
    with write_session(engine) as session:
        rows = session.execute(statement).all()
    return sorted((Claimed(*row) for row in rows), key=lambda c: c.job_id)


def renew(engine: Engine, owner: str, job_ids: list[int], *, lease_seconds: float) -> int:
    """Extend the lease on jobs still held by `owner`; returns how many were renewed."""
    if not job_ids:
        return 0
    now = utcnow()
    with write_session(engine) as session:
        result = session.execute(
            sa.update(Job)
            .where(col(Job.id).in_(job_ids), Job.lease_owner == owner, Job.state == "running")
            .values(lease_expires=now + timedelta(seconds=lease_seconds), updated_at=now)
        )
    return result.rowcount


def release(engine: Engine, owner: str, job_ids: list[int] | None = None, *, error: str | None = None) -> int:
    """Give `owner`'s running jobs (all, or `job_ids`) back to the queue, their attempt not counted.

    For work that stopped for a reason that is not the image's: a shutdown, a model that
    would not load. Returns how many jobs went back.
    """
    now = utcnow()
    where = [Job.lease_owner == owner, Job.state == "running"]
    if job_ids is not None:
        if not job_ids:
            return 0
        where.append(col(Job.id).in_(job_ids))
    values: dict[str, object] = {"state": "pending", "lease_owner": None, "lease_expires": None,
                                 "attempts": Job.attempts - 1, "updated_at": now}
    if error is not None:
        values["last_error"] = error
    with write_session(engine) as session:
        result = session.execute(sa.update(Job).where(*where).values(**values))
    return result.rowcount


def complete(session: Session, job_id: int, owner: str) -> bool:
    """Mark a job done inside the caller's transaction; False if the lease was lost."""
    now = utcnow()
    result = session.execute(
        sa.update(Job)
        .where(Job.id == job_id, Job.lease_owner == owner, Job.state == "running")
        .values(state="done", lease_owner=None, lease_expires=None, updated_at=now, finished_at=now,
                last_error=None)
    )
    return result.rowcount == 1


def fail(
    session: Session,
    job_id: int,
    owner: str,
    error: str,
    *,
    permanent: bool,
    max_attempts: int,
    backoff_seconds: float,
    backoff_max_seconds: float,
) -> str:
    """Record a failure: retry later with exponential backoff, or quarantine as failed.
    Returns the job's new state."""
    job = session.get(Job, job_id)
    if job is None or job.lease_owner != owner or job.state != "running":
        return job.state if job else "missing"
    now = utcnow()
    job.last_error = error[:2000]
    job.lease_owner = None
    job.lease_expires = None
    job.updated_at = now
    if permanent or job.attempts >= max_attempts:
        job.state = "failed"
        job.finished_at = now
    else:
        delay = min(backoff_seconds * (2 ** max(job.attempts - 1, 0)), backoff_max_seconds)
        job.state = "pending"
        job.run_after = now + timedelta(seconds=delay)
    session.add(job)
    return job.state


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this id runs on this machine (one we may not signal counts as alive)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_stale(engine: Engine) -> int:
    """Return to pending the running jobs whose lease expired or whose owner process on
    this host is gone (a crash, SIGKILL). Safe with other live workers."""
    host = socket.gethostname()
    now = utcnow()
    with write_session(engine) as session:
        running = session.exec(select(Job).where(Job.state == "running")).all()
        recovered = 0
        for job in running:
            dead = _owner_gone(job.lease_owner or "", host)
            expired = job.lease_expires is None or job.lease_expires < now
            if dead or expired:
                job.state = "pending"
                job.lease_owner = None
                job.lease_expires = None
                job.run_after = now
                job.updated_at = now
                session.add(job)
                recovered += 1
    return recovered


def retry(engine: Engine, job_id: int | None = None, *, all_failed: bool = False) -> int:
    """Put a failed job (or all failed jobs) back in the queue with fresh attempts."""
    now = utcnow()
    with write_session(engine) as session:
        if all_failed:
            jobs = session.exec(select(Job).where(Job.state == "failed")).all()
        else:
            job = session.get(Job, job_id)
            if job is None:
                raise NotFound(f"job {job_id} does not exist; `catalogcap jobs list` shows the jobs")
            jobs = [job]
        count = 0
        for job in jobs:
            if job.state != "failed":
                continue
            active = session.exec(
                select(Job).where(Job.asset_id == job.asset_id, col(Job.state).in_(("pending", "running")))
            ).first()
            if active is not None:
                continue
            job.state, job.attempts, job.run_after, job.updated_at = "pending", 0, now, now
            job.finished_at = None
            asset = session.get(Asset, job.asset_id)
            if asset is not None and asset.state == "rejected":
                asset.state, asset.error = "queued", None
                session.add(asset)
            session.add(job)
            count += 1
        if count:
            notify_queued(session)
    return count


def counts(session: Session) -> dict[str, int]:
    rows = session.execute(select(Job.state, sa.func.count()).group_by(Job.state)).all()
    found = {state: 0 for state in JOB_STATES}
    found.update({state: n for state, n in rows})
    return found


def runnable_count(session: Session, now: datetime | None = None) -> int:
    now = now or utcnow()
    return session.execute(
        select(sa.func.count()).select_from(Job).where(_runnable(now))
    ).scalar_one()
