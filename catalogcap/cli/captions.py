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


@click.group()
def captions() -> None:
    """List, show and decide captions."""


@captions.command("list")
@click.option("--state", type=click.Choice(CAPTION_STATES), help="Only captions in this state.")
@click.option("--kind", type=click.Choice(KINDS), help="Only this kind.")
@click.option("--search", help="Only captions whose text contains this (case-insensitive).")
@click.option("--limit", type=int, default=None, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_app
def list_(app: App, state: str | None, kind: str | None, search: str | None, limit: int | None,
          as_json: bool) -> None:
    """List captions (id order)."""
    from catalogcap.store.captions import list_captions
    from catalogcap.store.database import read_session

    with read_session(app.engine) as session:
        rows = list_captions(session, state=state, kind=kind, search=search, limit=limit)
    if as_json:
        app.json([row.to_json() for row in rows])
        return
    app.table(("id", "kind", "state", "text", "path"),
              [(row.id, row.kind, row.state, row.text, row.path or "") for row in rows],
              title=f"{len(rows)} captions")


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
