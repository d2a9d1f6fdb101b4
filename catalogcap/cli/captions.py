"""`catalogcap captions list|show|accept|edit|reject`: read and decide captions from scripts."""

from __future__ import annotations

import getpass

import click

from catalogcap.cli.app import App, pass_app
from catalogcap.errors import CatalogcapError
from catalogcap.store.models import CAPTION_STATES, KINDS


def register(cli: click.Group) -> None:
    cli.add_command(captions)


def default_reviewer() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "reviewer"


PAGE = 100  # captions a plain `captions list` shows
STREAM_PAGE = 2000  # captions read per query by `captions list --all`


@click.group()
def captions() -> None:
    """List, show and decide captions."""


@captions.command("list")
@click.option("--state", type=click.Choice(CAPTION_STATES), help="Only captions in this state.")
@click.option("--kind", type=click.Choice(KINDS), help="Only this kind.")
@click.option("--search", help="Only captions whose text contains this (case-insensitive).")
@click.option("--warnings", "with_warnings", is_flag=True,
              help="Only captions with consistency warnings (`captions show ID` lists them).")
@click.option("--limit", type=click.IntRange(min=1), default=PAGE, show_default=True,
              help="At most this many (a page); --after continues.")
@click.option("--after", "after_id", type=click.IntRange(min=0), default=0,
              help="Only captions with an id above this (the last id of the previous page).")
@click.option("--all", "everything", is_flag=True, help="Every matching caption, streamed (no page limit).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_app
def list_(app: App, state: str | None, kind: str | None, search: str | None, with_warnings: bool,
          limit: int, after_id: int, everything: bool, as_json: bool) -> None:
    """List captions in id order, a page at a time (superseded ones only with --state superseded).
    The last column names the warnings of a caption (`captions show ID` explains them).

    A catalog has millions: the first --limit are shown and `--after LAST_ID` gives the next page;
    `--all` streams every one (with --json as one JSON list, written as it is read)."""
    from catalogcap.store.captions import list_captions
    from catalogcap.store.database import read_session

    warnings = True if with_warnings else None
    if everything:
        _stream_all(app, state=state, kind=kind, search=search, warnings=warnings, after_id=after_id,
                    as_json=as_json)
        return
    with read_session(app.engine) as session:
        rows = list_captions(session, state=state, kind=kind, search=search, limit=limit + 1, after_id=after_id,
                             warnings=warnings)
    more, rows = len(rows) > limit, rows[:limit]
    if as_json:
        app.json([row.to_json() for row in rows])
    else:
        app.table(("id", "kind", "state", "text", "path", "warnings"),
                  [(row.id, row.kind, row.state, row.text, row.path or "",
                    ", ".join(str(w.get("code")) for w in row.warnings)) for row in rows],
                  title=f"{len(rows)} captions")
    if more:  # on stderr: a pipe or a JSON reader gets the page alone
        click.echo(f"more captions follow: --after {rows[-1].id} for the next page, --all for every one", err=True)


def _stream_all(app: App, *, after_id: int, as_json: bool, **filters) -> None:
    """Every matching caption, read and written a page at a time (flat memory at any size)."""
    import json

    from catalogcap.store.captions import list_captions
    from catalogcap.store.database import read_session

    first, shown = True, 0
    out = click.get_text_stream("stdout")
    if as_json:
        out.write("[")
    while True:
        with read_session(app.engine) as session:
            rows = list_captions(session, limit=STREAM_PAGE, after_id=after_id, **filters)
        for row in rows:
            if as_json:
                out.write(("\n" if first else ",\n") + json.dumps(row.to_json(), ensure_ascii=False))
            else:
                out.write(f"{row.id}\t{row.kind}\t{row.state}\t{row.text}\t{row.path or ''}\n")
            first = False
        shown += len(rows)
        if len(rows) < STREAM_PAGE:
            break
        after_id = rows[-1].id
    if as_json:
        out.write("\n]\n" if shown else "]\n")
    out.flush()


@captions.command("show")
@click.argument("caption_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def show(app: App, caption_id: int, as_json: bool) -> None:
    """Everything about one caption: texts, provenance, review, the asset and its paths."""
    from catalogcap.store.captions import get_caption
    from catalogcap.store.database import read_session

    with read_session(app.engine) as session:
        caption, asset, paths = get_caption(session, caption_id)
    data = caption.model_dump(mode="json")
    data["asset"] = asset.model_dump(mode="json") if asset else None
    data["paths"] = [{"path": p.path, "missing": p.missing} for p in paths]
    if as_json:
        app.json(data)
        return
    rows = [(key, str(data.get(key))) for key in ("kind", "state", "text", "model_text", "model", "adapter_id",
                                                  "version", "reviewer", "reviewed_at", "reject_reason",
                                                  "created_at", "updated_at")]
    rows.append(("generation", ", ".join(f"{k}={v}" for k, v in data["generation"].items())))
    if caption.source:
        rows.append(("source", f"human text from {caption.source}"))
    fields = (data.get("context") or {}).get("fields") or {}
    if fields:
        rows.append(("context", ", ".join(f"{k}={v}" for k, v in fields.items())))
    rows += [("warning", f"{w.get('code')}: {w.get('message')}") for w in data.get("warnings") or []]
    if asset:
        rows.append(("asset", f"{asset.id} {asset.format} {asset.width}x{asset.height} sha256:{asset.fingerprint}"))
    rows += [("path", p.path + (" (missing)" if p.missing else "")) for p in paths]
    app.table(("field", "value"), rows, title=f"caption {caption_id}", header=False)


def _decide(app: App, ids: tuple[int, ...], decision: str, text: str | None, reason: str | None,
            reviewer: str | None) -> None:
    """Each caption on its own: the ones saved are printed (and announced to plugins by the
    service); each refused one is an error line, and any refusal makes the exit code 1."""
    from catalogcap.plugins import hooks_for
    from catalogcap.services.captions import Decision, decide_each

    wanted = Decision(decision, reviewer or default_reviewer(), text=text, reason=reason,
                      alt_text_limit=app.settings.alt_text_limit)
    decided = decide_each(app.engine, hooks_for(app), ids, wanted)
    for change in decided.changes:
        app.console.print(f"caption {change.after.id}: {change.after.state}")
    errors = decided.errors
    if len(errors) == 1 and not decided.changes:
        raise errors[0]
    if errors:
        for error in errors:
            app.err.print(f"error: {error}", markup=False, highlight=False)
        raise CatalogcapError(f"{len(errors)} of {len(ids)} caption(s) not {decision}ed; see above")


@captions.command("accept")
@click.argument("ids", nargs=-1, type=int, required=True)
@click.option("--reviewer", help="Who decided (default: the OS user).")
@pass_app
def accept(app: App, ids: tuple[int, ...], reviewer: str | None) -> None:
    """Accept captions as they are."""
    _decide(app, ids, "accept", None, None, reviewer)


@captions.command("edit")
@click.argument("caption_id", type=int)
@click.argument("text")
@click.option("--reviewer", help="Who decided (default: the OS user).")
@pass_app
def edit(app: App, caption_id: int, text: str, reviewer: str | None) -> None:
    """Replace a caption's text with a correction (kept beside the model's text)."""
    _decide(app, (caption_id,), "edit", text, None, reviewer)


@captions.command("reject")
@click.argument("ids", nargs=-1, type=int, required=True)
@click.option("--reason", help="Why (kept with the caption).")
@click.option("--reviewer", help="Who decided (default: the OS user).")
@pass_app
def reject(app: App, ids: tuple[int, ...], reason: str | None, reviewer: str | None) -> None:
    """Reject captions: never published, never used for training."""
    _decide(app, ids, "reject", None, reason, reviewer)


@captions.command("prune")
@click.option("--missing", is_flag=True,
              help="Prune captions of images with no file left, and superseded captions (of replaced files).")
@click.option("--older-than", "older_than", type=click.FloatRange(min=0), metavar="DAYS",
              help="Only images missing for longer than DAYS.")
@click.option("--include-reviewed", is_flag=True,
              help="Also delete accepted and edited captions (kept by default: they are training data).")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def prune(app: App, missing: bool, older_than: float | None, include_reviewed: bool, dry_run: bool,
          as_json: bool) -> None:
    """Delete captions of images that are gone (and their asset rows when nothing else refers to them).

    \b
    catalogcap captions prune --missing --dry-run
    catalogcap captions prune --missing --older-than 30
    """
    from catalogcap.store.database import write_session
    from catalogcap.store.lifecycle import prune as prune_captions

    if not missing:
        raise click.UsageError("say what to prune: --missing (captions of images with no file left)")
    with write_session(app.engine) as session:
        report = prune_captions(session, older_than_days=older_than, include_reviewed=include_reviewed,
                                dry_run=dry_run)
    if as_json:
        app.json(report.to_json())
        return
    verb = "would delete" if dry_run else "deleted"
    states = ", ".join(f"{n} {state}" for state, n in sorted(report.by_state.items())) or "none"
    app.console.print(f"{verb} {report.captions} caption(s) ({states}) and {report.assets} image record(s)",
                      markup=False, highlight=False)
    if report.kept_reviewed:
        app.console.print(f"kept {report.kept_reviewed} reviewed caption(s) of missing images"
                          " (--include-reviewed deletes them too)", markup=False, highlight=False)
