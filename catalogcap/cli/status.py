"""`catalogcap status` and `catalogcap jobs list|retry`."""

from __future__ import annotations

import click
from sqlmodel import col, select

from catalogcap import redact
from catalogcap.cli.app import App, pass_app
from catalogcap.status import store_status, training_status
from catalogcap.store.models import JOB_STATES


def register(cli: click.Group) -> None:
    cli.add_command(status)
    cli.add_command(jobs)


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
    data["training"] = training_status(app.engine, app.settings)
    if as_json:
        app.json(data)
        return
    parts = [f"{k} {v}" for k, v in data["assets_by_state"].items()] + [f"{data['missing']} missing"]
    training = data["training"]
    last = training["last_run"]
    rows = [
        ("database", redact.database_url(app.settings.db_url)),
        ("assets", f"{data['assets']} ({', '.join(parts)})"),
        ("captions", ", ".join(f"{k} {v}" for k, v in data["captions"].items())
         + (f"; {data['orphaned']} pending of missing images (`captions prune --missing`)" if data["orphaned"]
            else "")),
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
    from catalogcap.store.database import read_session
    from catalogcap.store.models import Job
    from catalogcap.store.paths import primary_path

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
