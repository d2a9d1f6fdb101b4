"""`catalogcap init` and `catalogcap config show`."""

from __future__ import annotations

import click
from rich.table import Table

from catalogcap import redact
from catalogcap.cli.app import App, pass_app
from catalogcap.settings import CONFIG_NAME, field_docs, provenance

CONFIG_TEMPLATE = """\
# catalogcap settings. Precedence: defaults < this file < CATALOGCAP_* environment
# variables (nested with __, e.g. CATALOGCAP_GENERATION__ALT_TEXT__NUM_BEAMS=1) < command
# line options. `catalogcap config show` prints every effective value and its source.

# model = "Salesforce/blip-image-captioning-base"   # hub id or local folder
# device = "auto"          # auto | cpu | cuda | mps
# batch_size = 8
# alt_text_limit = 125
# database_url = "postgresql+psycopg://catalogcap@db/catalogcap"

[watch]
# folders = ["/srv/catalog/images"]
# quiet_seconds = 2.0
# polling = false          # true for network shares without inotify

[generation.alt_text]
# num_beams = 3
# max_new_tokens = 30

[generation.description]
# prompt = "a product photo of"
# num_beams = 4
# max_new_tokens = 60
"""


def register(cli: click.Group) -> None:
    cli.add_command(init)
    cli.add_command(config)


@click.command()
@pass_app
def init(app: App) -> None:
    """Create the home folder, a commented config file and the database."""
    settings = app.settings
    home = settings.home
    for sub in ("", "adapters", "logs", "runs"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    config_file = home / CONFIG_NAME
    created = not config_file.exists()
    if created:
        config_file.write_text(CONFIG_TEMPLATE, encoding="utf-8")
    from catalogcap.store.database import current_revision

    revision = current_revision(app.engine)
    app.console.print(f"home      {home}")
    app.console.print(f"config    {config_file}{' (created)' if created else ' (kept)'}")
    app.console.print(f"database  {redact.url(settings.db_url)} (schema {revision})")
    app.console.print(f"model     {settings.model}")
    from catalogcap.captioner.model import resolve_model
    from catalogcap.errors import ModelLoadError

    try:
        resolve_model(settings.model, settings.model_revision)
    except ModelLoadError as exc:  # init still succeeds: the model can be fixed before the first scan
        from rich.markup import escape

        app.err.print(f"[yellow]warning[/yellow]: {escape(str(exc))}", soft_wrap=True)


@click.group()
def config() -> None:
    """Inspect the effective settings."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: {setting: {value, source}}.")
@pass_app
def config_show(app: App, as_json: bool) -> None:
    """Print every setting, its effective value and where it came from."""
    from catalogcap.settings import _flatten

    settings = app.settings
    values = {key: redact.value(key, value) for key, value in _flatten(settings.model_dump(mode="json")).items()}
    sources = provenance(settings)
    docs = field_docs()
    if as_json:
        app.json({key: {"value": value, "source": sources.get(key, "default")} for key, value in values.items()})
        return
    table = Table(title=f"catalogcap settings (home {settings.home})", show_lines=False)
    table.add_column("setting", style="bold")
    table.add_column("value")
    table.add_column("source", style="cyan")
    table.add_column("description", style="dim")
    for key, value in values.items():
        table.add_row(key, repr(value) if isinstance(value, str) else str(value), sources.get(key, "default"),
                      docs.get(key, ""))
    app.console.print(table)
