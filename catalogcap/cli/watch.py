"""`catalogcap watch`: the long-running daemon."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from catalogcap.cli.app import App


def register(cli: click.Group) -> None:
    cli.add_command(watch)


@click.command()
@click.argument("folders", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--polling/--native", default=None, help="Polling observer for network shares without inotify.")
@click.option("--quiet-seconds", type=float, help="A file is taken once unchanged this long.")
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Log line format.")
@click.option("--no-training", is_flag=True, help="Do not run the scheduled training rounds.")
@click.option("--queue-only", is_flag=True,
              help="Only register and queue what arrives (no model, no training rounds);"
                   " `catalogcap worker` processes caption it.")
@click.option("--stop-timeout", type=float, default=30.0, show_default=True,
              help="On SIGTERM, wait this long for the batch in hand, then release it.")
@click.pass_context
def watch(ctx: click.Context, folders: tuple[Path, ...], polling: bool | None, quiet_seconds: float | None,
          log_format: str | None, no_training: bool, queue_only: bool, stop_timeout: float) -> None:
    """Watch FOLDERS (default: watch.folders) and caption every image that arrives.

    Reconciles what changed while it was down, then follows file-system events. One daemon
    per home; SIGTERM or Ctrl-C finish the batch in hand and exit 0."""
    app: App = ctx.obj
    for key, value in (("watch.polling", polling), ("watch.quiet_seconds", quiet_seconds),
                       ("log_format", log_format)):
        if value is not None:
            app.overrides[key] = value
    settings = app.settings
    if not queue_only:
        from catalogcap.captioner.model import resolve_model

        resolve_model(settings.model, settings.model_revision)  # fail in seconds, before reconciling anything
    (settings.home / "logs").mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(settings.home / "logs" / "watch.log", encoding="utf-8")
    file_handler.setFormatter(logging.getLogger().handlers[0].formatter or logging.Formatter())
    if isinstance(logging.getLogger().handlers[0], logging.StreamHandler):
        from catalogcap.logs import JsonFormatter

        file_handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(file_handler)
    from catalogcap.plugins import hooks_for
    from catalogcap.watch.daemon import Daemon

    daemon = Daemon(app.engine, settings, list(folders) or list(settings.watch.folders),
                    stop_timeout=stop_timeout, on_captions=hooks_for(app).captions_created,
                    schedule_training=not (no_training or queue_only), caption=not queue_only)
    ctx.exit(daemon.run())
