"""Alt text into a Shopify product CSV: match image rows to reviewed captions, fill one column.

Rows match by the file name in `Image Src` (query string, percent-encoding and the
`_<uuid>` suffix Shopify adds to duplicate uploads ignored), or by a file-name pattern
built from `Handle` and `Image Position` such as "{handle}-{position}".
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from catalogcap import csvcells
from catalogcap.plugins.events import CaptionEvent
from catalogcap_shopify import rawcsv

HANDLE, SRC, POSITION, ALT = "Handle", "Image Src", "Image Position", "Image Alt Text"
FRESH_HEADER = (HANDLE, SRC, POSITION, ALT)
SHOPIFY_SUFFIX = re.compile(r"_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)


@dataclass
class Report:
    rows_filled: int = 0
    image_rows: int = 0
    truncated: list[dict[str, Any]] = field(default_factory=list)
    kept_existing: list[dict[str, Any]] = field(default_factory=list)
    unmatched_rows: list[dict[str, Any]] = field(default_factory=list)
    unmatched_images: list[str] = field(default_factory=list)
    ambiguous: list[dict[str, Any]] = field(default_factory=list)


def clean(text: str, limit: int) -> tuple[str, bool]:
    """One line of alt text within `limit` characters, cut at a word boundary; (text, was_cut)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text, False
    cut = text[: limit - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:-") + "…", True


def src_key(src: str) -> str:
    """The file name an `Image Src` URL points at, lower-cased, without Shopify's duplicate suffix."""
    name = unquote(PurePosixPath(urlsplit(src.strip()).path).name)
    return file_key(name)


def file_key(name: str) -> str:
    path = PurePosixPath(name.lower())
    return SHOPIFY_SUFFIX.sub("", path.stem) + path.suffix


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """"{handle}-{position}" -> a regex over file stems with named groups."""
    parts = re.split(r"(\{handle\}|\{position\})", pattern)
    regex = "".join({"{handle}": "(?P<handle>.+?)", "{position}": r"(?P<position>\d+)"}.get(p, re.escape(p))
                    for p in parts)
    return re.compile(f"^{regex}$", re.IGNORECASE)


def alt_texts(events: Iterable[CaptionEvent], key: Any, report: Report) -> dict[str, tuple[str, str]]:
    """Match key -> (alt text, image path) of each reviewed alt text, by the name of every live
    path of the image and every name a client gave it (copies of one image all match); ambiguous
    keys are left out."""
    found: dict[str, tuple[str, str]] = {}
    clashes: dict[str, set[str]] = {}
    for event in events:
        if event.kind != "alt_text" or event.path is None:
            continue
        names = list(event.paths) + [n for n in event.names if n not in event.paths]
        for name in names:
            k = key(Path(name.replace("\\", "/")))
            if k in found and found[k][0] != event.text:
                clashes.setdefault(k, {found[k][1]}).add(event.path)
                continue
            found.setdefault(k, (event.text, event.path))
    for k, paths in clashes.items():
        del found[k]
        report.ambiguous.append({"key": k, "paths": sorted(paths)})
    return found


def fill(data: bytes, name: str, events: list[CaptionEvent], *, match: str, pattern: str, overwrite: bool,
         limit: int) -> tuple[bytes, Report]:
    """The CSV with `Image Alt Text` filled where a reviewed caption matches, and what happened."""
    raw = rawcsv.parse(data, name)
    if not raw.records:
        raise rawcsv.CsvError(f"{name}: empty file; export the products from Shopify admin first")
    header = raw.values(raw.records[0])
    missing = [column for column in (HANDLE, SRC, ALT) + ((POSITION,) if match == "pattern" else ())
               if column not in header]
    if missing:
        columns = ", ".join(repr(m) for m in missing)
        raise rawcsv.CsvError(f"{name}: no column {columns}; is it a Shopify product CSV export"
                              " (Products > Export)?")
    col = {column: header.index(column) for column in (HANDLE, SRC, POSITION, ALT) if column in header}
    report = Report()
    if match == "pattern":
        texts = alt_texts(events, lambda p: p.stem.lower(), report)
    else:
        texts = alt_texts(events, lambda p: file_key(p.name), report)
    used: set[str] = set()
    replacements: dict[tuple[int, int], str] = {}
    for index, record in enumerate(raw.records[1:], start=1):
        cells = raw.values(record)
        src = cells[col[SRC]] if col[SRC] < len(cells) else ""
        if not src.strip():
            continue  # a variant or option row, not an image
        report.image_rows += 1
        if match == "pattern":
            position = cells[col[POSITION]] if col[POSITION] < len(cells) else ""
            key = pattern.format(handle=cells[col[HANDLE]], position=position.strip()).lower()
        else:
            key = src_key(src)
        row = {"line": record.line, "image_src": src}
        if key not in texts or col[ALT] >= len(cells):
            report.unmatched_rows.append(row)
            continue
        used.add(key)
        if cells[col[ALT]].strip() and not overwrite:
            report.kept_existing.append(row)
            continue
        text, cut = clean(texts[key][0], limit)
        if cut:
            report.truncated.append(row)
        text = csvcells.neutralise(text)  # Shopify's CSV is opened in spreadsheets too (CWE-1236)
        if text != cells[col[ALT]]:
            replacements[(index, col[ALT])] = text
        report.rows_filled += 1
    matched = {path for key, (_, path) in texts.items() if key in used}  # by any of its names
    report.unmatched_images = sorted({path for _, path in texts.values()} - matched)
    return raw.render(replacements), report


def fresh(events: list[CaptionEvent], *, pattern: str, src_prefix: str, limit: int) -> tuple[bytes, Report]:
    """A new `Handle, Image Src, Image Position, Image Alt Text` CSV (handle and position from the
    file name by `pattern`, else the file stem and 1, 2, ...)."""
    regex = pattern_regex(pattern)
    report = Report()
    rows, positions = [], {}
    texts = alt_texts(events, lambda p: p.name, report)
    for name, (text, _path) in sorted(texts.items()):
        stem = PurePosixPath(name).stem
        found = regex.match(stem)
        handle = _slug(found["handle"] if found else stem)
        position = int(found["position"]) if found and "position" in found.groupdict() else (
            positions.get(handle, 0) + 1)
        positions[handle] = max(position, positions.get(handle, 0))
        alt, cut = clean(text, limit)
        if cut:
            report.truncated.append({"image": name})
        rows.append((handle, src_prefix + quote(name) if src_prefix else name, str(position), alt))
        report.rows_filled += 1
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(FRESH_HEADER)
    writer.writerows(csvcells.row(r) for r in sorted(rows, key=lambda r: (r[0], int(r[2]))))
    return buffer.getvalue().encode("utf-8"), report


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "product"
