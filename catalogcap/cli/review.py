"""`catalogcap review [export|import|stats]`: the review app, the spreadsheet round trip, review numbers."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

from catalogcap.cli.app import App, pass_app
from catalogcap.cli.captions import default_reviewer
from catalogcap.errors import CatalogcapError
from catalogcap.store.models import CAPTION_STATES, KINDS
from catalogcap.terminal import printable

if TYPE_CHECKING:
    from catalogcap.review.queue import Filters

ANY = "any"
STATE_CHOICE = click.Choice([*CAPTION_STATES, ANY])
state_option = click.option("--state", type=STATE_CHOICE, default="pending", show_default=True,
                            help="Captions in this state.")


def register(cli: click.Group) -> None:
    cli.add_command(review)


def _filters(state: str, kind: str | None, folder: str | None = None, model: str | None = None,
             adapter: str | None = None, search: str | None = None, warnings: bool = False) -> Filters:
    from catalogcap.review.queue import Filters

    return Filters(state=None if state == ANY else state, kind=kind, folder=folder, model=model,
                   adapter=adapter, search=search, warnings=warnings)


@click.group(invoke_without_command=True)
@click.option("--reviewer", help="Who decides, stored with each decision (default: the OS user).")
@state_option
@click.option("--kind", type=click.Choice(KINDS), help="Only this kind.")
@click.option("--folder", type=click.Path(file_okay=False), help="Only images under this folder.")
@click.option("--model", help="Only captions by a model whose id contains this.")
@click.option("--adapter", help='Only captions by this adapter ("none": the base model).')
@click.option("--search", help="Only captions whose text contains this (case-insensitive).")
@click.option("--warnings", "with_warnings", is_flag=True,
              help="Only captions with consistency warnings (the w key toggles it).")
@click.pass_context
def review(ctx: click.Context, reviewer: str | None, state: str, kind: str | None, folder: str | None,
           model: str | None, adapter: str | None, search: str | None, with_warnings: bool) -> None:
    """Review captions in the terminal: a accept, e edit, r reject, u undo, space/A bulk accept, ? help.

    Every decision is saved the moment it is made. Without a terminal, use `review export`
    and `review import` to decide in a spreadsheet.
    """
    if ctx.invoked_subcommand is not None:
        return
    app = ctx.find_object(App)
    filters = _filters(state, kind, folder, model, adapter, search, with_warnings)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise CatalogcapError(
            "`catalogcap review` needs an interactive terminal; to decide in a spreadsheet, use "
            "`catalogcap review export --csv FILE` and `catalogcap review import FILE`"
        )
    settings, engine = app.settings, app.engine
    # Imported only now: textual-image asks the terminal about graphics support on import,
    # which has to happen before the app takes the terminal over. A terminal that does not
    # answer gets a sensible fallback, not worth the traceback textual-image logs about it.
    logging.getLogger("textual_image").setLevel(logging.ERROR)
    from catalogcap.review.app import ReviewApp

    ReviewApp(engine, reviewer=reviewer or default_reviewer(), filters=filters,
              alt_text_limit=settings.alt_text_limit, max_pixels=settings.max_pixels,
              max_bytes=int(settings.max_file_mb * 2**20), on_reviewed=_plugin_hooks(app)).run()


def _plugin_hooks(app: App):
    """A `captions_reviewed` callback that loads the plugins on first use, off the UI's start."""
    hooks = None

    def on_reviewed(ids: list[int], decision: str) -> None:
        nonlocal hooks
        if hooks is None:
            from catalogcap.plugins import hooks_for

            hooks = hooks_for(app)
        hooks.captions_reviewed(ids, decision)

    return on_reviewed


@review.command("export")
@click.option("--csv", "csv_path", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="CSV file to write ('-' for standard output).")
@state_option
@click.option("--kind", type=click.Choice(KINDS), help="Only this kind.")
@click.option("--folder", type=click.Path(file_okay=False), help="Only images under this folder.")
@click.option("--force", is_flag=True, help="Replace the CSV file if it exists.")
@pass_app
def export(app: App, csv_path: str, state: str, kind: str | None, folder: str | None, force: bool) -> None:
    """Write captions to a CSV to decide in a spreadsheet: fill `decision` (accept, edit, reject),
    fix `final_text` where needed, then `catalogcap review import FILE`."""
    from catalogcap.review.spreadsheet import ENCODING, export_csv

    filters = _filters(state, kind, folder)
    if csv_path == "-":
        n = export_csv(app.engine, sys.stdout, filters)
    else:
        target = Path(csv_path)
        if not target.parent.is_dir():
            raise CatalogcapError(f"cannot write {target}: folder {target.parent} does not exist")
        if target.exists() and not force:
            raise CatalogcapError(f"{target} already exists; give --force to replace it, or another file name")
        # a temporary file renamed into place: an interrupted export never leaves half a sheet
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding=ENCODING, newline="") as out:
                n = export_csv(app.engine, out, filters)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    app.err.print(f"wrote {n:,} caption(s) ({filters.describe()}) to {csv_path}")


@review.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--reviewer", help="Who decided, stored with each decision (default: the OS user).")
@click.option("--overwrite", is_flag=True, help="Also replace decisions someone else made since the export.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_app
def import_(app: App, file: str, reviewer: str | None, overwrite: bool, as_json: bool) -> None:
    """Apply the decisions of an exported CSV; a file with any bad row changes nothing."""
    import csv

    from catalogcap.plugins import hooks_for
    from catalogcap.review.spreadsheet import ENCODING, check_file, import_csv

    settings = app.settings
    check_file(file)
    try:
        with open(file, encoding=ENCODING, newline="") as fp:
            report = import_csv(app.engine, file, fp, reviewer=reviewer or default_reviewer(),
                                alt_text_limit=settings.alt_text_limit, overwrite=overwrite,
                                announce=hooks_for(app))
    except UnicodeDecodeError as exc:
        raise CatalogcapError(f"{file} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                              "save it from the spreadsheet as \"CSV UTF-8\"") from None
    except csv.Error as exc:
        raise CatalogcapError(f"{file} is not a readable CSV: {exc}") from None
    if as_json:
        app.json({"applied": report.applied, "unchanged": report.unchanged, "blank": report.blank,
                  "skipped": report.skipped})
        return
    counts = ", ".join(f"{decision} {len(ids)}" for decision, ids in report.applied.items())
    app.console.print(f"applied {report.applied_count} decision(s){f' ({counts})' if counts else ''}; "
                      f"{report.unchanged} already so; {report.blank} row(s) without a decision")
    for line in report.skipped:
        app.console.print(f"skipped {printable(line)}", markup=False)


@review.command("stats")
@click.option("--kind", type=click.Choice(KINDS), help="Only this kind.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per adapter.")
@pass_app
def stats(app: App, kind: str | None, as_json: bool) -> None:
    """Acceptance, edit and rejection rates, mean edit distance and items per hour, per adapter."""
    from catalogcap.review.stats import review_stats
    from catalogcap.store.database import read_session

    with read_session(app.engine) as session:
        rows = review_stats(session, kind=kind)
    if as_json:
        app.json([row.to_json() for row in rows])
        return
    if not rows:
        app.console.print("no captions yet; `catalogcap scan FOLDER` makes some")
        return
    def rate(n: int, r: float | None) -> str:
        return f"{n:,}" + (f" ({r:.0%})" if r is not None else "")

    columns = ("adapter", "captions", "pending", "decided", "accepted", "edited", "rejected", "edit distance",
               "items/hour")
    app.table(columns, [(
        row.adapter, f"{row.captions:,}", f"{row.pending:,}", f"{row.decided:,}",
        rate(row.accepted, row.acceptance_rate), rate(row.edited, row.edit_rate),
        rate(row.rejected, row.rejection_rate),
        "" if row.mean_edit_distance is None else f"{row.mean_edit_distance:.1f}",
        "" if row.items_per_hour is None else f"{row.items_per_hour:,.0f}",
    ) for row in rows], title=f"review per adapter{f' ({kind})' if kind else ''}", right=columns[1:],
        sections=[len(rows) - 2] if len(rows) > 1 else [])
    # the footnote explains the columns: beside the table on a terminal, on stderr when piped
    (app.console if app.console.is_terminal else app.err).print(
        "edit distance: characters changed, mean over edited captions; items/hour: decisions "
        "per hour of reviewing (breaks over 10 minutes not counted)", style="dim")
