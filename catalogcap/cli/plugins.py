"""`catalogcap plugins list` and `catalogcap export FORMAT`: what is installed, and any exporter run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from catalogcap.cli.app import App, pass_app
from catalogcap.errors import CatalogcapError
from catalogcap.store.models import CAPTION_STATES, KINDS

PREVIEW = 10  # list items shown per report entry on a terminal (all of them with --json)


def register(cli: click.Group) -> None:
    cli.add_command(plugins)
    cli.add_command(export)


@click.group()
def plugins() -> None:
    """Installed plugins: versions, hooks, exporters, failures."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_app
def list_(app: App, as_json: bool) -> None:
    """Show built-in and installed plugins (also those disabled by the `plugins` setting or broken)."""
    from catalogcap.plugins.listing import describe
    from catalogcap.plugins.manager import make_manager

    items = describe(make_manager(app.settings.plugins))
    recorded = _recorded_failures(app)
    for item in items:
        item["failures_recorded"] = recorded.get(item["name"], {}).get("count", 0)
        item["last_error"] = item["last_error"] or recorded.get(item["name"], {}).get("last_error")
    if as_json:
        app.json(items)
        return
    app.table(("name", "package", "status", "hooks", "exporters", "failures"),
              [(item["name"], f"{item['package']} {item['version']}",
                item["status"] + (f": {item['error']}" if item.get("error") else ""),
                ", ".join(item["hooks"]), ", ".join(item["exporters"]),
                item["failures_recorded"] + item["failures"]) for item in items],
              title=f"{len(items)} plugins")


def _recorded_failures(app: App) -> dict[str, dict[str, Any]]:
    """Failures the daemon, review UI or API recorded in the store (none when there is no store yet)."""
    from catalogcap.plugins import plugin_failures

    try:
        return plugin_failures(app.engine)
    except CatalogcapError:
        return {}


def _parse_options(values: tuple[str, ...]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE (e.g. mode=embed)", param_hint="--option")
        parsed[key.strip()] = value
    return parsed


def _parse_states(value: str) -> list[str]:
    states = [s.strip() for s in value.split(",") if s.strip()]
    bad = [s for s in states if s not in CAPTION_STATES]
    if bad or not states:
        raise click.BadParameter(f"{value!r}: use states from {', '.join(CAPTION_STATES)}, comma-separated",
                                 param_hint="--state")
    return states


@click.command()
@click.argument("format_name", metavar="[FORMAT]", required=False)
@click.option("--format", "format_option", metavar="NAME", help="The exporter (same as the FORMAT argument).")
@click.option("--state", default="accepted,edited", show_default=True,
              help="Caption states to export, comma-separated.")
@click.option("--kind", "kinds", type=click.Choice(KINDS), multiple=True, help="Only this kind; repeatable.")
@click.option("--folder", type=click.Path(file_okay=False, path_type=Path),
              help="Only images under this folder.")
@click.option("--out", type=click.Path(path_type=Path), metavar="PATH",
              help="File or folder the exporter writes (default: the exporter's, e.g. stdout).")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Exporter setting for this run, over [plugin_config.FORMAT]; repeatable.")
@click.option("--force", is_flag=True, help="Replace the --out file if it exists.")
@click.option("--overwrite-human", is_flag=True,
              help="Replace alt text people already wrote in the target (kept and counted by default).")
@click.option("--json", "as_json", is_flag=True, help="Print the exporter's report as JSON.")
@pass_app
def export(app: App, format_name: str | None, format_option: str | None, state: str, kinds: tuple[str, ...],
           folder: Path | None, out: Path | None, options: tuple[str, ...], force: bool, overwrite_human: bool,
           as_json: bool) -> None:
    """Export reviewed captions with any registered exporter (`catalogcap plugins list` shows them).

    \b
    catalogcap export jsonl --out captions.jsonl
    catalogcap export --format xmp                        # .xmp sidecars next to the images
    catalogcap export xmp -o mode=embed --out /srv/web    # embedded into copies under /srv/web
    catalogcap export shopify -o input=products_export.csv --out products_alt.csv
    """
    from catalogcap.plugins.config import plugin_settings
    from catalogcap.plugins.events import select_caption_events
    from catalogcap.plugins.manager import exporters, make_manager
    from catalogcap.store.database import read_session

    name = _format_name(format_name, format_option)
    if out is not None and str(out) != "-":
        refuse_to_replace(out, force)
    pm = make_manager(app.settings.plugins)
    found = exporters(pm)
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise CatalogcapError(f"no exporter {name!r} (installed: {known}); see `catalogcap plugins list`")
    exporter = found[name]
    overrides = _parse_options(options)
    if overwrite_human:
        overrides["overwrite_human"] = "true"
        if not _knows(pm, name, "overwrite_human"):
            raise CatalogcapError(f"exporter {name!r} writes new files only, never over human text;"
                                  " --overwrite-human does not apply to it")
    validated = plugin_settings(pm, app.settings, name, overrides)
    config = validated.model_dump() if validated is not None else {
        **app.settings.plugin_config.get(name, {}), **overrides}
    with read_session(app.engine) as session:
        events = select_caption_events(session, states=_parse_states(state), kinds=kinds or KINDS,
                                       folder=str(folder.absolute()) if folder else None)
    try:
        report = exporter.fn(events, out, config)
    except CatalogcapError:
        raise
    except Exception as exc:
        pm.record_failure(exporter.plugin, f"exporter {name}", exc)
        raise CatalogcapError(
            f"exporter {name} (plugin {exporter.plugin}) failed: {type(exc).__name__}: {exc}") from exc
    report = dict(report or {})
    to_stdout = report.get("dest") == "-"
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False, default=str), err=to_stdout)
    else:
        _print_report(app.err if to_stdout else app.console, name, report)
    errors = report.get("errors") or []
    if errors:
        raise CatalogcapError(f"{len(errors)} item(s) could not be exported by {name}; see the report above")


def _knows(pm: Any, section: str, setting: str) -> bool:
    from catalogcap.plugins.config import settings_models

    model = settings_models(pm).get(section)
    return model is not None and setting in model[0].model_fields


def refuse_to_replace(path: Path, force: bool) -> None:
    """An existing file is replaced only with --force (a folder is where an exporter writes files)."""
    if force or path.is_dir() or not (path.exists() or path.is_symlink()):
        return
    raise CatalogcapError(f"{path} already exists; give --force to replace it, or another --out")


def _format_name(argument: str | None, option: str | None) -> str:
    if argument and option and argument != option:
        raise click.UsageError(f"FORMAT {argument!r} and --format {option!r} disagree; give one of them")
    name = argument or option
    if not name:
        raise click.UsageError("name the exporter: `catalogcap export FORMAT` (`catalogcap plugins list`)")
    return name


def _print_report(console: Console, name: str, report: dict[str, Any]) -> None:
    """Scalars as `key: value`; lists as a count and their first items (stderr when stdout holds the data)."""
    console.print(f"[bold]{name}[/bold]")
    for key, value in report.items():
        if isinstance(value, list):
            console.print(f"  {key}: {len(value)}")
            for item in value[:PREVIEW]:
                console.print(f"    - {_one_line(item)}", markup=False)
            if len(value) > PREVIEW:
                console.print(f"    ... {len(value) - PREVIEW} more (use --json for all)")
        else:
            console.print(f"  {key}: {value}", markup=False)


def _one_line(item: Any) -> str:
    if isinstance(item, dict):
        return ", ".join(f"{k}={v}" for k, v in item.items())
    return str(item)
