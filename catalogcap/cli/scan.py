"""`catalogcap scan` (register and caption folders) and `catalogcap caption` (no database)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from catalogcap.cli.app import App, pass_app
from catalogcap.errors import CatalogcapError


def register(cli: click.Group) -> None:
    cli.add_command(scan)
    cli.add_command(caption)


def _progress(app: App, enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=app.err, disable=not enabled, transient=True)


@click.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary object instead of tables.")
@click.option("--queue-only", "--no-caption", "no_caption", is_flag=True,
              help="Only register and queue; leave captioning to `catalogcap worker` or `watch`.")
@pass_app
def scan(app: App, folders: tuple[Path, ...], as_json: bool, no_caption: bool) -> None:
    """Register new and changed images under FOLDERS (recursively) and caption them.

    Idempotent: unchanged files are skipped by size and mtime, moved or duplicated bytes
    are not captioned again, changed bytes are."""
    from catalogcap.intake import scan as scan_folders
    from catalogcap.store.database import read_session
    from catalogcap.store.queue import recover_stale, runnable_count
    from catalogcap.worker import Worker

    settings = app.settings
    if not no_caption:  # fail in seconds, before any job is touched, when the model cannot be had
        from catalogcap.captioner.model import resolve_model

        resolve_model(settings.model, settings.model_revision)
    engine = app.engine
    recover_stale(engine)
    show = not as_json and app.err.is_terminal
    with _progress(app, show) as progress:
        task = progress.add_task("registering", total=None)
        report = scan_folders(engine, folders, settings, advance=lambda count: progress.advance(task, count))
        progress.update(task, total=report.found, completed=report.found)
        captioned = 0
        rejections = list(report.rejections)
        if not no_caption:
            with read_session(engine) as session:
                queued = runnable_count(session)
            if queued:
                task = progress.add_task("captioning", total=queued)
                from catalogcap.plugins import hooks_for

                worker = Worker(engine, settings, on_captions=hooks_for(app).captions_created)
                try:
                    total = worker.drain(progress=lambda b: progress.advance(task, b.captioned + b.failed))
                finally:
                    worker.close()
                captioned = total.captioned
                rejections += total.rejections
    summary = {
        "found": report.found,
        "new": report.outcomes["new"] + report.outcomes["changed"],
        "unchanged": report.outcomes["unchanged"],
        "metadata_only": report.outcomes["metadata"],
        "moved": report.outcomes["moved"],
        "duplicates": report.outcomes["duplicate"],
        "changed": report.outcomes["changed"],
        "missing": report.missing,
        "captioned": captioned,
        "rejected": len(rejections),
        "rejections": rejections,
        "unreadable_folders": report.unreadable_folders,
    }
    if as_json:
        app.json(summary)
        return
    app.table(("count", "value"), [(key, str(summary[key])) for key in (
        "found", "new", "changed", "unchanged", "metadata_only", "moved", "duplicates", "missing", "captioned",
        "rejected")], title="scan", header=False)
    if rejections:
        app.table(("path", "reason"), [(item["path"], item["reason"]) for item in rejections], title="rejected files")
    if report.unreadable_folders:
        app.table(("path", "reason"), [(item["path"], item["reason"]) for item in report.unreadable_folders],
                  title="unreadable folders (not scanned)")


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {path, alt_text, description}.")
@click.option("--field", "fields", multiple=True, metavar="NAME=VALUE",
              help="A product field for prompt templates (e.g. --field brand=NordLight); adds to, and"
                   " overrides, what the store knows about the file. Repeatable.")
@pass_app
def caption(app: App, files: tuple[Path, ...], as_json: bool, fields: tuple[str, ...]) -> None:
    """Caption FILES and print the result; the database is not touched.

    Uses the active adapter when the store has one, unless it was trained for another base
    model (then the base model captions, with a warning, as in the daemon). Prompt templates
    that name product fields use the product data the store has for a file it knows, plus
    --field values. Exits 1 if any file was rejected."""
    from catalogcap.captioner import Captioner

    settings = app.settings
    given = _parse_fields(fields)
    adapter = _active_adapter_if_any(app)
    captioner = Captioner.from_settings(
        settings, adapter_id=adapter.id if adapter else None, adapter_dir=Path(adapter.path) if adapter else None
    )
    contexts = _file_contexts(app, files, given) if captioner.per_image else None
    # the engine decodes the next batch in worker threads while the model runs
    outcome: dict[Path, dict] = {}
    for path, result in captioner.caption_files(dict.fromkeys(files), batch_size=settings.batch_size,
                                                contexts=contexts):
        if isinstance(result, Exception):
            outcome[path] = {"error": str(result)}
        else:
            outcome[path] = {"alt_text": result.alt_text, "description": result.description}
    results = [{"path": str(path), **outcome[path]} for path in files]
    if as_json:
        app.json(results)
    else:
        for item in results:
            app.console.print(f"[bold]{item['path']}[/bold]")
            if "error" in item:
                app.err.print(f"  [red]rejected[/red]: {item['error']}")
            else:
                app.console.print(f"  alt text:    {item['alt_text']}")
                app.console.print(f"  description: {item['description']}")
    if any("error" in item for item in results):
        raise click.exceptions.Exit(1)


def _parse_fields(fields: tuple[str, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in fields:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise click.BadParameter(f"{item!r}: write NAME=VALUE with a plain field name, e.g. brand=NordLight",
                                     param_hint="--field")
        found[name] = value
    return found


def _file_contexts(app: App, files: tuple[Path, ...], given: dict[str, str]) -> dict[Path, dict[str, str]]:
    """Product fields per file: the store's (for files it knows; never creates a store) + `given`."""
    from catalogcap.products.prompts import uses_context

    known: dict[Path, dict[str, str]] = {}
    settings = app.settings
    if uses_context(settings) and (settings.database_url is not None or (settings.home / "catalogcap.db").exists()):
        from sqlmodel import col, select

        from catalogcap.products.prompts import resolve_contexts
        from catalogcap.store.database import read_session
        from catalogcap.store.models import AssetPath

        wanted = {str(f.expanduser().absolute()): f for f in files}
        try:
            with read_session(app.engine) as session:
                rows = session.exec(select(AssetPath.path, AssetPath.asset_id).where(
                    col(AssetPath.path).in_(list(wanted)))).all()
                contexts = resolve_contexts(session, [asset_id for _, asset_id in rows])
        except Exception as exc:  # an unreadable store: caption without its product data
            app.err.print(f"warning: cannot read product data from the store ({exc})", markup=False)
            rows, contexts = [], {}
        for path, asset_id in rows:
            known[wanted[path]] = dict(contexts[asset_id].fields)
    return {f: {**known.get(f, {}), **given} for f in files}


def _active_adapter_if_any(app: App):
    """The store's active adapter, if a store exists already (caption never creates one) and the
    adapter was trained for the configured model."""
    settings = app.settings
    if settings.database_url is None and not (settings.home / "catalogcap.db").exists():
        return None
    try:
        from catalogcap.training.registry import usable_active

        adapter, refused = usable_active(app.engine, settings.model)
    except CatalogcapError:
        return None
    if refused is not None:
        app.err.print(f"warning: active adapter {refused.id} was trained for model {refused.base_model}, not"
                      f" {settings.model}; captioning without it", markup=False, highlight=False)
    return adapter
