"""An image's product context: the fields known about the product it shows, merged from every
source that names it.

A `products` row names its image in one of two ways: bound to the asset (`asset_id`: an API
upload, a sidecar `NAME.json` read at intake) or by `file`, as an import gave it (a file name,
or a path relative to a watched root). An image matches a `file` row when one of its live paths
ends with that relative path, or, for a bare name, has that name (case-folded, as Shopify's
exporter and most DAMs compare names). Where sources disagree the more specific one wins:
api > sidecar > plugin > an import (csv/shopify), and among rows of one source the newest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from sqlmodel import Session, col, or_, select

from catalogcap.store.models import PRODUCT_FIELDS, AssetPath, Product

PRECEDENCE = {"api": 0, "sidecar": 1, "plugin": 2, "shopify": 3, "csv": 3}  # lower wins


def fold(name: str) -> str:
    """The form file names are compared in: the last part, case-folded."""
    return PurePosixPath(name.replace("\\", "/")).name.casefold()


def match_keys(path: str) -> list[str]:
    """Every relative form of `path` an import row may name it by, longest first:
    '/photos/a/b.jpg' -> ['photos/a/b.jpg', 'a/b.jpg', 'b.jpg']."""
    parts = PurePosixPath(path.replace("\\", "/")).parts
    parts = parts[1:] if parts and parts[0] == "/" else parts
    return ["/".join(parts[i:]) for i in range(len(parts))]


@dataclass
class Context:
    """What is known about the product an image shows. `fields` holds the named fields
    (title, brand, category, sku, color, material) and any others, as non-empty strings;
    `sources` says which rows gave them (for provenance); `alt_text` is human alt text that
    came with the data, if any."""

    fields: dict[str, str] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)
    alt_text: str | None = None
    alt_text_source: str | None = None

    def __bool__(self) -> bool:
        return bool(self.fields)

    def get(self, name: str) -> str | None:
        return self.fields.get(name)

    def to_json(self) -> dict[str, Any]:
        return {"fields": dict(self.fields), "sources": list(self.sources)}


def _values(row: Product) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in (row.fields or {}).items():
        if value is not None and str(value).strip():
            found[str(name)] = str(value).strip()
    for name in PRODUCT_FIELDS:
        value = getattr(row, name)
        if value is not None and str(value).strip():
            found[name] = str(value).strip()
    return found


def names_the_image(row: Product, asset_id: int, names: set[str], keys: set[str]) -> bool:
    """Whether `row` describes the asset whose paths fold to `names` and have the relative
    forms `keys`: bound to it, or naming one of its files (a relative path as a path)."""
    if row.asset_id is not None:
        return row.asset_id == asset_id
    if row.file_folded not in names:
        return False
    wanted = (row.file or "").replace("\\", "/").lstrip("/")
    return "/" not in wanted or wanted in keys


def ordered(rows: list[Product]) -> list[Product]:
    """Rows in merge order: the least specific source first, newest last within a source."""
    return sorted(rows, key=lambda r: (-PRECEDENCE.get(r.source.split(":", 1)[0], 9), r.updated_at, r.id or 0))


def merge(rows: list[Product]) -> Context:
    """The context the rows (in merge order) give together: later rows win a field."""
    context = Context()
    for row in rows:
        context.fields.update(_values(row))
        context.sources.append({"source": row.source, "key": row.key, "origin": row.origin})
        if row.alt_text and row.alt_text.strip():
            context.alt_text, context.alt_text_source = row.alt_text.strip(), row.source
    context.sources.reverse()  # the winning source first
    return context


def rows_for(session: Session, asset_id: int, paths: list[str] | None = None) -> list[Product]:
    """The product rows that describe the asset, most specific last (so later rows win a merge)."""
    if paths is None:
        paths = list(session.exec(select(AssetPath.path).where(AssetPath.asset_id == asset_id,
                                                               col(AssetPath.missing).is_(False))).all())
        names = list(session.exec(select(AssetPath.source_name).where(
            AssetPath.asset_id == asset_id, col(AssetPath.missing).is_(False),
            col(AssetPath.source_name).is_not(None))).all())
        paths = paths + [n for n in names if n]
    folded = {fold(p) for p in paths}
    keys = {k for p in paths for k in match_keys(p)}
    query = select(Product).where(or_(Product.asset_id == asset_id, col(Product.file_folded).in_(folded)))
    return ordered([row for row in session.exec(query).all() if names_the_image(row, asset_id, folded, keys)])


def context_for(session: Session, asset_id: int, paths: list[str] | None = None) -> Context:
    """The merged product context of an asset (empty when nothing names it)."""
    return merge(rows_for(session, asset_id, paths))
