"""`catalogcap status` and `catalogcap jobs list|retry`."""

from __future__ import annotations

from datetime import timedelta

import click
from sqlmodel import col, select

from catalogcap import redact
from catalogcap.cli.app import App, pass_app
from catalogcap.store.models import JOB_STATES


def register(cli: click.Group) -> None:
    cli.add_command(status)
    cli.add_command(jobs)


def store_status(engine) -> dict:
    import sqlalchemy as sa

    from catalogcap.store.captions import state_counts
    from catalogcap.store.database import read_session
    from catalogcap.store.models import Adapter, Asset, Job, utcnow
    from catalogcap.store.queue import counts

    with read_session(engine) as session:
        assets = session.execute(select(sa.func.count()).select_from(Asset)).scalar_one()
        by_state = dict(session.execute(select(Asset.state, sa.func.count()).group_by(Asset.state)).all())
        missing = session.execute(
            select(sa.func.count()).select_from(Asset).where(col(Asset.missing_since).is_not(None))
        ).scalar_one()
        adapter = session.exec(select(Adapter).where(Adapter.state == "active")).first()
        since = utcnow() - timedelta(minutes=5)
        recent = session.execute(
            select(sa.func.count()).select_from(Job).where(Job.state == "done", Job.finished_at >= since)
        ).scalar_one()
        last_error = session.exec(
            select(Job).where(col(Job.last_error).is_not(None)).order_by(col(Job.updated_at).desc())
        ).first()
        return {
            "assets": assets,
            "assets_by_state": by_state,
            "missing": missing,
            "captions": state_counts(session),
            "jobs": counts(session),
            "adapter": adapter.id if adapter else None,
            "captions_per_minute": round(recent / 5, 2),
            "last_error": (
                {"job": last_error.id, "error": last_error.last_error, "at": last_error.updated_at.isoformat()}
                if last_error else None
            ),
        }


def training_status(app: App) -> dict:
    from catalogcap.training.round import last_run
    from catalogcap.watch.schedule import next_run

    run = last_run(app.engine)
    return {
        "last_run": None if run is None else {
            "id": run.id, "state": run.state, "promoted": run.promoted, "reason": run.reason,
            "adapter": run.adapter_id, "started_at": run.started_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None},
        "next_run": next_run(app.settings.training.schedule).isoformat(timespec="minutes"),
        "schedule": app.settings.training.schedule,
    }


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_app
def status(app: App, as_json: bool) -> None:
    """Assets, captions by state, the queue and the active adapter."""
    from catalogcap.watch.lock import holder_pid

    data = store_status(app.engine)
    pid = holder_pid(app.settings.home)
    data["daemon"] = {"running": pid is not None, "pid": pid}
    from catalogcap.workers import live_workers

    data["workers"] = live_workers(app.engine)
    data["training"] = training_status(app)
    if as_json:
        app.json(data)
        return
    parts = [f"{k} {v}" for k, v in data["assets_by_state"].items()] + [f"{data['missing']} missing"]
    training = data["training"]
    last = training["last_run"]
    rows = [
        ("database", redact.database_url(app.settings.db_url)),
        ("assets", f"{data['assets']} ({', '.join(parts)})"),
        ("captions", ", ".join(f"{k} {v}" for k, v in data["captions"].items())),
        ("jobs", ", ".join(f"{k} {v}" for k, v in data["jobs"].items())),
        ("adapter", data["adapter"] or "none (base model)"),
        ("model", app.settings.model),
        ("daemon", f"running (pid {pid})" if pid else "not running"),
        ("workers", "; ".join(f"{w['host']} pid {w['pid']}: {w['jobs_done']} done, beat {w['heartbeat_at']}"
                              for w in data["workers"]) or "none"),
        ("throughput", f"{data['captions_per_minute']} images/min over the last 5 minutes"),
        ("training", (f"last {last['id']} {last['state']}{' promoted' if last['promoted'] else ''}:"
                      f" {last['reason'] or ''}" if last else "no round yet") + f"; next {training['next_run']}"),
    ]
    if data["last_error"]:
        rows.append(("last error", f"job {data['last_error']['job']}: {data['last_error']['error']}"))
    app.table(("item", "value"), rows, title="catalogcap status", header=False)


@click.group()
def jobs() -> None:
    """The captioning queue."""


@jobs.command("list")
@click.option("--state", type=click.Choice(JOB_STATES), help="Only jobs in this state.")
@click.option("--limit", type=int, default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def jobs_list(app: App, state: str | None, limit: int, as_json: bool) -> None:
    """List jobs, newest first, with attempts and the last error."""
    from catalogcap.store.captions import primary_path
    from catalogcap.store.database import read_session
    from catalogcap.store.models import Job

    with read_session(app.engine) as session:
        query = select(Job).order_by(col(Job.id).desc()).limit(limit)
        if state:
            query = query.where(Job.state == state)
        rows = [(job, primary_path(session, job.asset_id)) for job in session.exec(query).all()]
    if as_json:
        app.json([{"id": j.id, "asset_id": j.asset_id, "path": p, "state": j.state, "attempts": j.attempts,
                   "last_error": j.last_error, "run_after": j.run_after.isoformat(),
                   "updated_at": j.updated_at.isoformat()} for j, p in rows])
        return
    app.table(("id", "state", "attempts", "path", "last error"),
              [(job.id, job.state, job.attempts, path or "", job.last_error or "") for job, path in rows],
              title=f"{len(rows)} jobs")


@jobs.command("retry")
@click.argument("job_id", type=int, required=False)
@click.option("--all-failed", is_flag=True, help="Retry every failed (quarantined) job.")
@pass_app
def jobs_retry(app: App, job_id: int | None, all_failed: bool) -> None:
    """Put a failed job (or all of them) back in the queue."""
    from catalogcap.store.queue import retry

    if (job_id is None) == (not all_failed):
        raise click.UsageError("give a JOB_ID or --all-failed (not both)")
    count = retry(app.engine, job_id, all_failed=all_failed)
    app.console.print(f"{count} job(s) queued again")
