"""`catalogcap products import|show|list`: product data about images (see README, Product data)."""

from __future__ import annotations

from pathlib import Path

import click

from catalogcap.cli.app import App, pass_app
from catalogcap.errors import NotFound


def register(cli: click.Group) -> None:
    cli.add_command(products)


@click.group()
def products() -> None:
    """Import, show and list product data (title, brand, SKU, colour...) about images."""


@products.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(("csv", "shopify")),
              help="csv: a `file` column and any fields; shopify: a Shopify product export (default: from the header).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def import_(app: App, file: Path, fmt: str | None, as_json: bool) -> None:
    """Import product rows from FILE. Re-importing updates the same rows; rows whose image is not
    in the store yet are kept and link when the file arrives. Alt text in the file is imported as
    accepted human text for the images it names."""
    from catalogcap.products.importer import import_file

    report = import_file(app.engine, file, fmt=fmt, alt_text_limit=app.settings.alt_text_limit)
    if as_json:
        app.json(report.to_json())
        return
    app.table(("count", "value"), [("format", report.format), ("rows", str(report.rows)),
                                   ("matched", str(report.matched)), ("unmatched", str(report.unmatched)),
                                   ("updated", str(report.updated))], title=f"import {file}", header=False)
    if report.unmatched_rows:
        app.table(("line", "reason"), [(str(item["line"]), item["reason"]) for item in report.unmatched_rows],
                  title="rows not linked to an image")


def _asset_id(app: App, target: str) -> int:
    from sqlmodel import select

    from catalogcap.store.database import read_session
    from catalogcap.store.models import Asset, AssetPath

    with read_session(app.engine) as session:
        if target.isdigit():
            if session.get(Asset, int(target)) is None:
                raise NotFound(f"no asset has id {target}")
            return int(target)
        found = session.exec(select(AssetPath.asset_id).where(AssetPath.path == str(Path(target).absolute()))).first()
    if found is None:
        raise NotFound(f"{target} is not in the store; scan its folder first")
    return found


@products.command("show")
@click.argument("target", metavar="PATH_OR_ASSET_ID")
@click.option("--json", "as_json", is_flag=True, help="Print {asset_id, fields, sources} as JSON.")
@pass_app
def show(app: App, target: str, as_json: bool) -> None:
    """The product context of an image (every source merged; plugins included) and where each part came from."""
    from catalogcap.plugins.manager import make_manager
    from catalogcap.products.hooks import context_with_plugins
    from catalogcap.store.database import read_session

    asset_id = _asset_id(app, target)
    with read_session(app.engine) as session:
        context = context_with_plugins(session, asset_id, pm=make_manager(app.settings.plugins))
    data = {"asset_id": asset_id, **context.to_json(), "alt_text": context.alt_text,
            "alt_text_source": context.alt_text_source}
    if as_json:
        app.json(data)
        return
    app.table(("field", "value"), sorted(context.fields.items()), title=f"asset {asset_id}")
    app.table(("source", "key", "origin"), [(s["source"], s["key"], s["origin"] or "") for s in context.sources],
              title="sources (the first wins)")
    if context.alt_text:
        app.table(("alt text", "source"), [(context.alt_text, context.alt_text_source or "")], header=True)


@products.command("list")
@click.option("--unmatched", is_flag=True, help="Only rows that name no image in the store (yet).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_app
def list_(app: App, unmatched: bool, as_json: bool) -> None:
    """Product rows, by key."""
    from sqlmodel import col, select

    from catalogcap.products.importer import unmatched_products
    from catalogcap.store.database import read_session
    from catalogcap.store.models import PRODUCT_FIELDS, Product

    with read_session(app.engine) as session:
        rows = list(session.exec(select(Product).order_by(col(Product.key))).all())
        lonely = unmatched_products(session, rows)
    items = [{"key": r.key, "source": r.source, "file": r.file, "asset_id": r.asset_id, "origin": r.origin,
              **{name: getattr(r, name) for name in PRODUCT_FIELDS}, "fields": r.fields, "alt_text": r.alt_text,
              "matched": r.id not in lonely} for r in rows if not unmatched or r.id in lonely]
    if as_json:
        app.json(items)
        return
    app.table(("key", "source", "title", "sku", "matched"),
              [(i["key"], i["source"], i["title"] or "", i["sku"] or "", "yes" if i["matched"] else "no")
               for i in items], title=f"{len(items)} product rows")
