"""`catalogcap products import`: product rows from a CSV file or a Shopify product export.

Everything is read and checked before anything is written; the rows are then written in one
transaction, so a file refused for its structure (not UTF-8, a cell over 10 MB, a Shopify
export without `Handle` or `Image Src`, two columns meaning the same field) changes nothing.
Problems of single rows (a file name the store does not know yet, a second row for the same
file) are reported per line; rows for images not in the store yet are kept and link when the
file arrives.

Cells are data: a cell that looks like a spreadsheet formula (`=HYPERLINK(...)`, `+`, `-`,
`@`) is stored as the text it is, never evaluated; every CSV catalogcap writes passes its
cells through `catalogcap.csvcells.neutralise`.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from catalogcap.errors import CatalogcapError
from catalogcap.products.context import fold, match_keys
from catalogcap.products.consistency import refresh
from catalogcap.store.captions import import_human
from catalogcap.store.database import write_session
from catalogcap.store.models import PRODUCT_FIELDS, AssetPath, Product, utcnow

FORMATS = ("csv", "shopify")
MAX_CELL_BYTES = 10 * 2**20  # one cell (a Shopify Body (HTML) can be long, not this long)
MAX_ROW_BYTES = 16 * 2**20  # all cells of one row together
MAX_COLUMNS = 1000
MAX_FILE_BYTES = 2**30  # the whole file is read and checked before anything is written
CHUNK = 500

# Column names (normalised by `identifier`) that mean one of the named product fields.
ALIASES = {
    "file": ("file", "filename", "file_name", "image", "image_file", "image_filename", "path"),
    "title": ("title", "name", "product_name", "product_title"),
    "brand": ("brand", "vendor", "manufacturer", "make"),
    "category": ("category", "type", "product_type", "product_category"),
    "sku": ("sku", "variant_sku", "article_number", "item_number"),
    "color": ("color", "colour"),
    "material": ("material", "materials"),
    "alt_text": ("alt_text", "alt", "alttext", "image_alt_text"),
}
COLUMN_MEANING = {alias: name for name, aliases in ALIASES.items() for alias in aliases}

# Shopify's product export
HANDLE, TITLE, VENDOR, TYPE, TAGS, SRC, ALT, SKU = (
    "Handle", "Title", "Vendor", "Type", "Tags", "Image Src", "Image Alt Text", "Variant SKU")
SHOPIFY_REQUIRED = (HANDLE, SRC)
# The `_<uuid>` Shopify appends to a duplicate upload's name: the same rule as catalogcap-shopify's
# exporter (catalogcap_shopify.fill.src_key), so an import links the files an export fills.
SHOPIFY_SUFFIX = re.compile(r"_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)


class ImportRefused(CatalogcapError):
    """The file cannot be imported as a whole; nothing was written."""


@dataclass
class Row:
    line: int
    file: str
    values: dict[str, str]  # named fields (PRODUCT_FIELDS) present in the row
    fields: dict[str, str]  # every other field
    alt_text: str | None = None


@dataclass
class Report:
    rows: int = 0
    matched: int = 0
    unmatched: int = 0
    updated: int = 0
    unmatched_rows: list[dict[str, Any]] = field(default_factory=list)
    asset_ids: set[int] = field(default_factory=set)  # the images the rows name (not in the JSON)
    format: str = "csv"

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "matched": self.matched, "unmatched": self.unmatched, "updated": self.updated,
                "unmatched_rows": list(self.unmatched_rows)}


def identifier(name: str) -> str:
    """A column name as a field name usable in a prompt template: lower snake_case ASCII
    ("Fit / Cut" -> "fit_cut", "Größe" -> "grosse"); "" when nothing is left."""
    text = unicodedata.normalize("NFKD", name.replace("ß", "ss")).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return f"f_{text}" if text[:1].isdigit() else text


def field_name(key: str) -> str:
    """A field's name as stored: a named field by any of its spellings ("Colour" -> "color",
    "Vendor" -> "brand"), any other as its `identifier`."""
    name = identifier(key)
    meaning = COLUMN_MEANING.get(name)
    return meaning if meaning in PRODUCT_FIELDS else name


def src_file(src: str) -> str:
    """The file name an `Image Src` URL points at: percent-decoded, query and Shopify's
    duplicate-upload suffix left out (as catalogcap-shopify's exporter compares them)."""
    name = PurePosixPath(unquote(urlsplit(src.strip()).path)).name
    path = PurePosixPath(name)
    return SHOPIFY_SUFFIX.sub("", path.stem) + path.suffix


# -- reading -------------------------------------------------------------------------------

def decode(data: bytes, name: str) -> str:
    """UTF-8 text (a BOM is allowed), or a refusal naming the line and byte offset."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportRefused(
            f"{name}: not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}, line {line}); save the file"
            " as UTF-8 (\"CSV UTF-8\" in Excel) and import it again. Nothing was imported") from None
    return text[1:] if text.startswith("\ufeff") else text


def records(text: str, name: str) -> list[tuple[int, list[str]]]:
    """(first line, cells) of every record, refusing oversized cells and rows by line."""
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text) + 1))  # the per-cell limit is checked here, in bytes
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    found: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for cells in reader:
            line, start = start, reader.line_num + 1
            if len(cells) > MAX_COLUMNS:
                raise ImportRefused(f"{name}: line {line}: {len(cells)} columns (at most {MAX_COLUMNS});"
                                    " nothing was imported")
            total = 0
            for index, cell in enumerate(cells):
                size = len(cell.encode("utf-8", "surrogatepass"))
                total += size
                if size > MAX_CELL_BYTES:
                    raise ImportRefused(f"{name}: line {line}, column {index + 1}: a cell of {size:,} bytes (at"
                                        f" most {MAX_CELL_BYTES:,}); nothing was imported")
            if total > MAX_ROW_BYTES:
                raise ImportRefused(f"{name}: line {line}: a row of {total:,} bytes (at most {MAX_ROW_BYTES:,});"
                                    " nothing was imported")
            found.append((line, cells))
    except csv.Error as exc:
        raise ImportRefused(f"{name}: line {start}: not readable as CSV ({exc}); nothing was imported") from None
    return found


def detect(header: list[str]) -> str | None:
    names = {cell.strip() for cell in header}
    if HANDLE in names and (SRC in names or TITLE in names):
        return "shopify"
    if any(COLUMN_MEANING.get(identifier(cell)) == "file" for cell in header):
        return "csv"
    return None


def parse(data: bytes, name: str, fmt: str | None = None) -> tuple[str, list[Row], list[dict[str, Any]]]:
    """(format, rows, per-line problems) of an import file; ImportRefused for a file that
    cannot be imported as a whole."""
    found = records(decode(data, name), name)
    while found and not any(cell.strip() for cell in found[0][1]):
        found.pop(0)
    if not found:
        raise ImportRefused(f"{name}: empty file: no header row")
    header = found[0][1]
    fmt = fmt or detect(header)
    if fmt is None:
        raise ImportRefused(f"{name}: no `file` column (the image's file name) and not a Shopify product export"
                            " (no Handle column); add a `file` column or give --format")
    if fmt == "shopify":
        return fmt, *_shopify_rows(found, name)
    return fmt, *_csv_rows(found, name)


def _cell(cells: list[str], index: int) -> str:
    return cells[index].strip() if index < len(cells) else ""


def _columns(header: list[str], name: str, first_line: int) -> list[str | None]:
    """The field each column holds ("" for an unnamed column, ignored)."""
    meanings: list[str | None] = []
    seen: dict[str, int] = {}
    for index, cell in enumerate(header):
        key = identifier(cell)
        meaning = COLUMN_MEANING.get(key, key) if key else None
        if meaning:
            if meaning in seen:
                raise ImportRefused(
                    f"{name}: line {first_line}: columns {seen[meaning] + 1} ({header[seen[meaning]]!r}) and"
                    f" {index + 1} ({cell!r}) both mean `{meaning}`; keep one. Nothing was imported")
            seen[meaning] = index
        meanings.append(meaning)
    return meanings


def _check_width(line: int, cells: list[str], header: list[str], name: str) -> None:
    extra = [c for c in cells[len(header):] if c.strip()]
    if extra:
        raise ImportRefused(f"{name}: line {line}: {len(cells)} cells but the header has {len(header)} columns;"
                            " nothing was imported")


def _split(line: int, file: str, values: dict[str, str]) -> Row:
    named = {k: v for k, v in values.items() if k in PRODUCT_FIELDS}
    others = {k: v for k, v in values.items() if k not in PRODUCT_FIELDS and k not in ("alt_text", "file")}
    return Row(line, file, named, others, values.get("alt_text") or None)


def _dedupe(rows: list[Row], problems: list[dict[str, Any]]) -> list[Row]:
    """The first row for each file; a later one is reported naming both lines."""
    first: dict[str, Row] = {}
    kept = []
    for row in rows:
        key = row.file
        if key in first:
            problems.append({"line": row.line, "reason": f"a second row for {row.file} (line {first[key].line} has"
                                                         f" it too); line {first[key].line} was imported, this one"
                                                         " was not"})
            continue
        first[key] = row
        kept.append(row)
    return kept


def _relative(file: str) -> str | None:
    """`file` as the relative path rows are matched by, or None when it could name a file
    outside a watched root (absolute, or `..`)."""
    text = file.replace("\\", "/").strip()
    parts = PurePosixPath(text).parts
    if not parts or text.startswith("/") or re.match(r"^[A-Za-z]:", text) or ".." in parts:
        return None
    return "/".join(p for p in parts if p != ".")


def _csv_rows(found: list[tuple[int, list[str]]], name: str) -> tuple[list[Row], list[dict[str, Any]]]:
    (first_line, header), body = found[0], found[1:]
    meanings = _columns(header, name, first_line)
    if "file" not in meanings:
        raise ImportRefused(f"{name}: no `file` column (the image's file name, or its path relative to a"
                            " watched folder); nothing was imported")
    rows: list[Row] = []
    problems: list[dict[str, Any]] = []
    for line, cells in body:
        _check_width(line, cells, header, name)
        values = {m: _cell(cells, i) for i, m in enumerate(meanings) if m and _cell(cells, i)}
        if not values:
            continue  # a blank line
        file = values.get("file", "")
        relative = _relative(file) if file else None
        if not file or relative is None:
            why = "no file name" if not file else f"{file!r} is not a file name or a relative path"
            problems.append({"line": line, "reason": f"{why}; row not imported"})
            continue
        rows.append(_split(line, relative, values))
    return _dedupe(rows, problems), problems


def _shopify_rows(found: list[tuple[int, list[str]]], name: str) -> tuple[list[Row], list[dict[str, Any]]]:
    (_, header), body = found[0], found[1:]
    names = [cell.strip() for cell in header]
    missing = [column for column in SHOPIFY_REQUIRED if column not in names]
    if missing:
        raise ImportRefused(f"{name}: not a Shopify product export: no column {', '.join(map(repr, missing))}"
                            " (export from Shopify admin: Products > Export). Nothing was imported")
    at = {column: names.index(column) for column in names if column}
    options = [(at.get(f"Option{n} Name"), at.get(f"Option{n} Value")) for n in (1, 2, 3)]
    rows: list[Row] = []
    problems: list[dict[str, Any]] = []
    product: dict[str, Any] = {}  # the fields of the product the current rows continue
    for line, cells in body:
        _check_width(line, cells, header, name)
        if not any(c.strip() for c in cells):
            continue
        handle = _cell(cells, at[HANDLE])
        title = _cell(cells, at[TITLE]) if TITLE in at else ""
        if handle != product.get("handle") or title:
            product = {"handle": handle, "values": {"title": title, "brand": _cell(cells, at.get(VENDOR, 10**6)),
                                                   "category": _cell(cells, at.get(TYPE, 10**6)),
                                                   "tags": _cell(cells, at.get(TAGS, 10**6))},
                       "options": [_cell(cells, n) if n is not None else "" for n, _ in options]}
        src = _cell(cells, at[SRC])
        if not src:
            continue  # a variant row without an image
        values: dict[str, str] = {"handle": handle, **{k: v for k, v in product["values"].items() if v}}
        for option_name, (_, value_index) in zip(product["options"], options, strict=True):
            value = _cell(cells, value_index) if value_index is not None else ""
            key = identifier(option_name) if option_name else ""
            if key and value and not (key == "title" and value == "Default Title"):  # Shopify's one-variant placeholder
                meaning = COLUMN_MEANING.get(key, key)
                values[f"option_{key}" if meaning in ("file", "alt_text", "title") else meaning] = value
        sku = _cell(cells, at.get(SKU, 10**6))
        if sku:
            values["sku"] = sku
        alt = _cell(cells, at.get(ALT, 10**6))
        if alt:
            values["alt_text"] = alt
        file = src_file(src)
        if not file or _relative(file) is None:
            problems.append({"line": line, "reason": f"Image Src {src!r} names no file; row not imported"})
            continue
        rows.append(_split(line, file, values))
    return _dedupe(rows, problems), problems


# -- writing -------------------------------------------------------------------------------

def path_index(session: Session) -> dict[str, list[tuple[int, str]]]:
    """Live paths (and API clients' own names) of every asset, by folded file name."""
    index: dict[str, list[tuple[int, str]]] = {}
    rows = session.exec(select(AssetPath.asset_id, AssetPath.path, AssetPath.source_name)
                        .where(col(AssetPath.missing).is_(False))).all()
    for asset_id, path, source_name in rows:
        for name in (path, source_name):
            if name:
                index.setdefault(fold(name), []).append((asset_id, name))
    return index


def matching_assets(file: str, index: dict[str, list[tuple[int, str]]]) -> list[int]:
    """The assets a row naming `file` describes: the rule of `context.rows_for` (a bare name
    matches by folded name, a relative path must be a tail of the image's path)."""
    wanted = file.replace("\\", "/").lstrip("/")
    found = []
    for asset_id, path in index.get(fold(file), []):
        if "/" in wanted and wanted not in match_keys(path):
            continue
        if asset_id not in found:
            found.append(asset_id)
    return found


def _row_values(row: Row) -> dict[str, Any]:
    values: dict[str, Any] = {name: row.values.get(name) for name in PRODUCT_FIELDS}
    values.update(fields=dict(sorted(row.fields.items())), alt_text=row.alt_text)
    return values


def write(session: Session, rows: list[Row], source: str, origin: str, *, alt_text_limit: int) -> Report:
    """Upsert `rows` as products of `source` and import their human alt text; inside the caller's
    transaction."""
    report = Report(format=source)
    now = utcnow()
    keys = [f"{source}:{row.file}" for row in rows]
    existing: dict[str, Product] = {}
    for start in range(0, len(keys), CHUNK):
        for product in session.exec(select(Product).where(col(Product.key).in_(keys[start:start + CHUNK]))).all():
            existing[product.key] = product
    index = path_index(session)
    for key, row in zip(keys, rows, strict=True):
        report.rows += 1
        values = _row_values(row)
        product = existing.get(key)
        if product is None:
            product = Product(key=key, source=source, origin=origin, file=row.file, file_folded=fold(row.file),
                              created_at=now, updated_at=now, **values)
            session.add(product)
        elif any(getattr(product, k) != v for k, v in values.items()) or product.origin != origin:
            for k, v in values.items():
                setattr(product, k, v)
            product.origin, product.updated_at = origin, now
            session.add(product)
            report.updated += 1
        assets = matching_assets(row.file, index)
        report.asset_ids.update(assets)
        if assets:
            report.matched += 1
            for asset_id in assets:
                if row.alt_text:
                    import_human(session, asset_id, "alt_text", row.alt_text, source=source,
                                 alt_text_limit=alt_text_limit, now=now)
        else:
            report.unmatched += 1
            report.unmatched_rows.append({"line": row.line, "reason": f"no image named {row.file} in the store yet"
                                                                      " (kept: it links when the file arrives)"})
    session.flush()
    return report


def import_file(engine: Engine, path: Path, *, fmt: str | None = None, alt_text_limit: int = 125) -> Report:
    """Import a CSV or Shopify export: parse and check everything, then write it in one transaction."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImportRefused(f"{path}: {size:,} bytes (at most {MAX_FILE_BYTES:,}); split the file")
        data = path.read_bytes()
    except OSError as exc:
        raise ImportRefused(f"cannot read {path}: {exc.strerror or exc}") from None
    shown = str(path)
    fmt, rows, problems = parse(data, shown, fmt)
    origin = str(path.absolute())
    with write_session(engine) as session:
        report = write(session, rows, fmt, origin, alt_text_limit=alt_text_limit)
        # the captions of the images it names are checked against the new data, in the same commit
        refresh(session, report.asset_ids, alt_text_limit=alt_text_limit)
    report.format = fmt
    report.rows += len(problems)
    report.unmatched += len(problems)
    report.unmatched_rows = sorted(problems + report.unmatched_rows, key=lambda item: item["line"])
    return report


def unmatched_products(session: Session, products: Iterable[Product]) -> set[int]:
    """Ids of the rows among `products` that describe no image in the store."""
    index = path_index(session)
    return {p.id for p in products if p.asset_id is None and not matching_assets(p.file or "", index)}
