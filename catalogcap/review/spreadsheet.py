"""The spreadsheet round trip: export captions to CSV, import the decisions made in it.

Text cells are written through `csvcells.neutralise` (a spreadsheet never runs a caption
as a formula) and read back through `csvcells.restore`, so the round trip is lossless. The
file read must be a regular file of at most `MAX_FILE_BYTES`, with lines of at most
`MAX_LINE_CHARS`: `/dev/zero` or a FIFO is refused, not read forever.

Import is all-or-nothing: every row is checked first, and one bad row (unknown id or
decision, an empty edit, alt text over the limit) means nothing is written and every bad
row is listed by line. The good file is then applied in one transaction. A row whose
caption already has that outcome is left alone, so importing the same file twice is
harmless; a caption someone else decided differently since is skipped and reported,
unless `overwrite` is given.
"""

from __future__ import annotations

import csv
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TextIO

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from catalogcap import csvcells
from catalogcap.errors import CatalogcapError
from catalogcap.review.queue import Filters, page
from catalogcap.services import SILENT, Announcer
from catalogcap.store.captions import decide, length_problem
from catalogcap.store.database import read_session, write_session
from catalogcap.store.models import Caption

_ID = re.compile(r"[0-9]{1,18}")

COLUMNS = ("caption_id", "path", "kind", "model_text", "final_text", "decision")
REQUIRED = ("caption_id", "final_text", "decision")
DECISIONS = ("accept", "edit", "reject")
ENCODING = "utf-8-sig"  # a BOM makes Excel read UTF-8; reading with utf-8-sig accepts files with or without
_CHUNK = 500
MAX_FILE_BYTES = 512 * 2**20  # 100,000 captions with long descriptions fit many times over
MAX_LINE_CHARS = 2**20  # a line of an export is a few KiB at most


@dataclass(frozen=True)
class BadRow:
    line: int
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem}"


class ImportRejected(CatalogcapError):
    """The file has bad rows; nothing was imported."""

    def __init__(self, source: str, bad: list[BadRow]) -> None:
        self.bad = bad
        listing = "\n".join(f"  {row}" for row in bad)
        super().__init__(
            f"{source}: {len(bad)} bad row(s), nothing was imported; fix them and import again:\n{listing}"
        )


@dataclass(frozen=True)
class Row:
    line: int
    caption_id: int
    decision: str
    final_text: str


@dataclass
class ImportReport:
    applied: dict[str, list[int]] = field(default_factory=dict)  # decision -> caption ids
    unchanged: int = 0
    blank: int = 0  # rows without a decision
    skipped: list[str] = field(default_factory=list)  # decided by someone else meanwhile

    @property
    def applied_count(self) -> int:
        return sum(len(ids) for ids in self.applied.values())


def export_csv(engine: Engine, out: TextIO, filters: Filters) -> int:
    """Write the matching captions with an empty `decision` column; returns the row count."""
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    written, after = 0, 0
    with read_session(engine) as session:
        while items := page(session, filters, after_id=after, limit=1000):
            for item in items:
                writer.writerow(csvcells.row([item.id, item.path or "", item.kind, item.model_text, item.text, ""]))
            written += len(items)
            after = items[-1].id
    return written


def check_file(path: str) -> None:
    """Refuse what is not a plain file of a sane size before opening it: opening a FIFO blocks,
    and a device such as /dev/zero never ends."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise CatalogcapError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = ("a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO" if stat.S_ISFIFO(info.st_mode)
                else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else "a socket")
        raise CatalogcapError(f"{path} is not a regular file (it is {kind}); import a CSV file saved from"
                              " `catalogcap review export`")
    if info.st_size > MAX_FILE_BYTES:
        raise CatalogcapError(f"{path} is {info.st_size / 2**20:,.0f} MiB, more than the {MAX_FILE_BYTES // 2**20} MiB"
                              " a review sheet can be; split it (export by --kind or --folder)")


def _bounded_lines(source: str, fp: TextIO) -> Iterator[str]:
    """The file's lines, refusing one over MAX_LINE_CHARS or a file growing past MAX_FILE_BYTES."""
    total, number = 0, 0
    while line := fp.readline(MAX_LINE_CHARS + 1):
        number += 1
        if len(line) > MAX_LINE_CHARS:
            raise CatalogcapError(f"{source}: line {number} is longer than {MAX_LINE_CHARS:,} characters;"
                                  " this is not a review sheet from `catalogcap review export`")
        total += len(line)
        if total > MAX_FILE_BYTES:
            raise CatalogcapError(f"{source}: more than {MAX_FILE_BYTES // 2**20} MiB of text; not a review sheet")
        yield line


def read_rows(source: str, fp: TextIO) -> tuple[list[Row], list[BadRow], int]:
    """Rows with a decision, rows that are wrong on their face, and the number left blank."""
    reader = csv.reader(_bounded_lines(source, fp))
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        raise CatalogcapError(
            f"{source} is empty; export one with `catalogcap review export --csv FILE`"
        ) from None
    absent = [name for name in REQUIRED if name not in header]
    if absent:
        raise CatalogcapError(
            f"{source}: the header lacks {', '.join(absent)}; the columns are {', '.join(COLUMNS)}"
        )
    where = {name: header.index(name) for name in REQUIRED}
    rows: list[Row] = []
    bad: list[BadRow] = []
    blank = 0
    first_line: dict[int, int] = {}
    line = reader.line_num + 1
    for record in reader:
        values = {name: (record[i] if i < len(record) else "") for name, i in where.items()}
        decision = values["decision"].strip().lower()
        raw_id = values["caption_id"].strip()
        if not decision or not any(cell.strip() for cell in record):
            blank += 1
        elif decision not in DECISIONS:
            shown = values["decision"].strip()
            bad.append(BadRow(line, f"unknown decision {shown!r}: use accept, edit, reject or nothing"))
        elif not _ID.fullmatch(raw_id):  # ASCII digits that fit a database integer (not "²", not 2**64)
            bad.append(BadRow(line, f"caption_id {raw_id!r} is not a caption id"))
        elif decision == "edit" and not values["final_text"].strip():
            bad.append(BadRow(line, f"caption {raw_id}: an edit needs the corrected text in final_text"))
        elif int(raw_id) in first_line:
            first = first_line[int(raw_id)]
            bad.append(BadRow(line, f"caption {raw_id} is decided again (first on line {first})"))
        else:
            first_line[int(raw_id)] = line
            rows.append(Row(line, int(raw_id), decision, csvcells.restore(values["final_text"].strip())))
        line = reader.line_num + 1
    return rows, bad, blank


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def check_rows(engine: Engine, rows: list[Row], *, alt_text_limit: int) -> list[BadRow]:
    """What is wrong with rows against the store: unknown ids, alt text over the limit."""
    kinds: dict[int, tuple[str, str]] = {}
    c = Caption.__table__.c
    with read_session(engine) as session:
        for chunk in _chunks([row.caption_id for row in rows]):
            for cid, kind, text in session.execute(sa.select(c.id, c.kind, c.text).where(c.id.in_(chunk))):
                kinds[cid] = (kind, text)
    bad = []
    for row in rows:
        if row.caption_id not in kinds:
            bad.append(BadRow(row.line, f"caption {row.caption_id} does not exist"))
            continue
        kind, current = kinds[row.caption_id]
        final = _final_text(row, current)
        problem = None if row.decision == "reject" else length_problem(kind, final, alt_text_limit)
        if problem:
            bad.append(BadRow(row.line, f"caption {row.caption_id}: {problem}"))
    return bad


def _final_text(row: Row, current: str) -> str:
    """`accept` takes final_text when given (a fix typed in the sheet), else the text as it is."""
    return row.final_text or current


def _outcome(caption: Caption, row: Row) -> tuple[str, str]:
    if row.decision == "reject":
        return "rejected", caption.text
    final = _final_text(row, caption.text)
    return ("accepted" if final == caption.model_text else "edited"), final


def import_csv(engine: Engine, source: str, fp: TextIO, *, reviewer: str, alt_text_limit: int,
               overwrite: bool = False, announce: Announcer = SILENT) -> ImportReport:
    """Check the whole file, then apply it in one transaction (see the module docstring); what was
    applied is announced to `announce` after the commit."""
    rows, bad, blank = read_rows(source, fp)
    bad += check_rows(engine, rows, alt_text_limit=alt_text_limit)
    if bad:
        raise ImportRejected(source, sorted(bad, key=lambda b: b.line))
    report = ImportReport(blank=blank)
    with write_session(engine) as session:
        for row in rows:
            caption = session.get(Caption, row.caption_id)
            state, final = _outcome(caption, row)
            if caption.state == state and caption.text == final:
                report.unchanged += 1
                continue
            if caption.state != "pending" and not overwrite:
                report.skipped.append(
                    f"line {row.line}: caption {caption.id} is already {caption.state}"
                    f"{f' by {caption.reviewer}' if caption.reviewer else ''}; kept (--overwrite replaces it)"
                )
                continue
            decide(session, row.caption_id, row.decision, reviewer=reviewer,
                   text=None if row.decision == "reject" else final, expected_version=caption.version,
                   alt_text_limit=alt_text_limit)
            report.applied.setdefault(row.decision, []).append(row.caption_id)
    for decision, ids in report.applied.items():
        announce.captions_reviewed(ids, decision)
    return report
