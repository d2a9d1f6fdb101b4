"""What `catalogcap status`, `/v1/status` and `/metrics` report: read from the store only."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from catalogcap.settings import Settings
from catalogcap.store.captions import state_counts
from catalogcap.store.database import read_session
from catalogcap.store.lifecycle import orphaned_count
from catalogcap.store.models import Adapter, Asset, Job, utcnow
from catalogcap.store.queue import counts


def store_status(engine: Engine) -> dict[str, Any]:
    """Assets, captions and jobs by state, the active adapter, throughput and the last job error."""
    with read_session(engine) as session:
        assets = session.execute(select(sa.func.count()).select_from(Asset)).scalar_one()
        by_state = dict(session.execute(select(Asset.state, sa.func.count()).group_by(Asset.state)).all())
        missing = session.execute(
            select(sa.func.count()).select_from(Asset).where(col(Asset.missing_since).is_not(None))
        ).scalar_one()
        adapter = session.exec(select(Adapter).where(Adapter.state == "active").limit(1)).first()
        since = utcnow() - timedelta(minutes=5)
        recent = session.execute(
            select(sa.func.count()).select_from(Job).where(Job.state == "done", Job.finished_at >= since)
        ).scalar_one()
        last_error = session.exec(
            select(Job).where(col(Job.last_error).is_not(None)).order_by(col(Job.updated_at).desc()).limit(1)
        ).first()
        return {
            "assets": assets,
            "assets_by_state": by_state,
            "missing": missing,
            "captions": state_counts(session),  # `superseded`: pending captions of bytes a file no longer holds
            "orphaned": orphaned_count(session),  # pending captions whose image has no live path
            "jobs": counts(session),
            "adapter": adapter.id if adapter else None,
            "captions_per_minute": round(recent / 5, 2),
            "last_error": (
                {"job": last_error.id, "error": last_error.last_error, "at": last_error.updated_at.isoformat()}
                if last_error else None
            ),
        }


def training_status(engine: Engine, settings: Settings) -> dict[str, Any]:
    """The last training round and when the schedule runs the next one."""
    from catalogcap.training.round import last_run
    from catalogcap.watch.schedule import next_run

    run = last_run(engine)
    return {
        "last_run": None if run is None else {
            "id": run.id, "state": run.state, "promoted": run.promoted, "reason": run.reason,
            "adapter": run.adapter_id, "started_at": run.started_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None},
        "next_run": next_run(settings.training.schedule).isoformat(timespec="minutes"),
        "schedule": settings.training.schedule,
    }
