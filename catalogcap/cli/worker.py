"""`catalogcap worker`: caption queued jobs, no folder watching (run several, on many machines)."""

from __future__ import annotations

import click

from catalogcap.cli.app import App


def register(cli: click.Group) -> None:
    cli.add_command(worker)


@click.command()
@click.option("--until-empty", is_flag=True, help="Exit 0 once no job is runnable, instead of waiting for more.")
@click.option("--batch-size", type=click.IntRange(1, 4096), help="Images per claim and model call.")
@click.option("--stop-timeout", type=float, default=30.0, show_default=True,
              help="On SIGTERM, wait this long for the batch in hand, then give it back to the queue.")
@click.option("--json", "as_json", is_flag=True, help="At exit, print {owner, captioned, released}.")
@click.pass_context
def worker(ctx: click.Context, until_empty: bool, batch_size: int | None, stop_timeout: float,
           as_json: bool) -> None:
    """Claim and caption queued jobs (queued by `scan --queue-only`, `watch --queue-only`, the API).

    Any number run at once against one store; each claims its own batches under a lease, so a
    worker that dies only delays its batch by `queue.lease_seconds`. SIGTERM or Ctrl-C finish
    the batch in hand and exit 0. On PostgreSQL idle workers wake as soon as jobs are queued."""
    app: App = ctx.obj
    if batch_size is not None:
        app.overrides["batch_size"] = batch_size
    settings = app.settings
    from catalogcap.captioner.model import resolve_model

    resolve_model(settings.model, settings.model_revision)  # fail in seconds when the model cannot be had
    from catalogcap.plugins import hooks_for
    from catalogcap.workers import run

    summary = run(app.engine, settings, until_empty=until_empty, stop_timeout=stop_timeout,
                  on_captions=hooks_for(app).captions_created)
    if as_json:
        app.json({"owner": summary.owner, "captioned": summary.captioned, "released": summary.released})
