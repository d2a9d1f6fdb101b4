"""A CSV file as text with the exact span of every field, so one column can change and every
other byte (quoting style, BOM, CRLF or LF, multi-line cells) stays as it was.

The split is checked against Python's csv module: if the two ever read a record differently,
the file is refused rather than rewritten on a guess.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from catalogcap.errors import CatalogcapError

BOM = "\ufeff"


class CsvError(CatalogcapError):
    """The CSV cannot be read, or not safely enough to rewrite it."""


@dataclass
class Field:
    start: int
    end: int
    quoted: bool


@dataclass
class Record:
    line: int  # 1-based line where the record starts
    fields: list[Field] = field(default_factory=list)


@dataclass
class RawCsv:
    text: str  # without the BOM
    bom: bool
    records: list[Record]

    def value(self, record: Record, index: int) -> str:
        span = record.fields[index]
        raw = self.text[span.start:span.end]
        return raw[1:-1].replace('""', '"') if span.quoted and raw.endswith('"') and len(raw) > 1 else raw

    def values(self, record: Record) -> list[str]:
        return [self.value(record, i) for i in range(len(record.fields))]

    def render(self, replacements: dict[tuple[int, int], str]) -> bytes:
        """The file with the given (record index, field index) values replaced, else byte-identical."""
        pieces, position = [], 0
        for (r, f), value in sorted(replacements.items()):
            span = self.records[r].fields[f]
            pieces += [self.text[position:span.start], quote(value, span.quoted)]
            position = span.end
        pieces.append(self.text[position:])
        return ((BOM if self.bom else "") + "".join(pieces)).encode("utf-8")


def quote(value: str, force: bool) -> str:
    """A field as csv would write it; quoted when it must be or when the original cell was."""
    if force or any(ch in value for ch in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def parse(data: bytes, name: str) -> RawCsv:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CsvError(f"{name}: not UTF-8 (byte 0x{data[exc.start]:02x} on line {line}); Shopify exports"
                       " UTF-8, so re-export it or save it as UTF-8") from None
    bom = text.startswith(BOM)
    if bom:
        text = text[1:]
    raw = RawCsv(text, bom, _split(text))
    _check(raw, name)
    return raw


def _split(text: str) -> list[Record]:
    records: list[Record] = []
    i, n, line = 0, len(text), 1
    while i < n:
        record = Record(line)
        while True:
            start = i
            quoted = i < n and text[i] == '"'
            if quoted:
                i += 1
                while i < n:
                    if text[i] == '"':
                        if i + 1 < n and text[i + 1] == '"':
                            i += 2
                            continue
                        i += 1
                        break
                    i += 1
            while i < n and text[i] not in ',\r\n':  # unquoted text, or stray text after a closing quote
                i += 1
            record.fields.append(Field(start, i, quoted))
            line += text.count("\n", start, i)
            if i < n and text[i] == ",":
                i += 1
                continue
            break
        if text.startswith("\r\n", i):
            i += 2
        elif i < n:
            i += 1
        line += 1
        records.append(record)
    return records


def _check(raw: RawCsv, name: str) -> None:
    csv.field_size_limit(max(csv.field_size_limit(), len(raw.text) + 1))  # long Body (HTML) cells
    try:
        expected = list(csv.reader(io.StringIO(raw.text, newline="")))
    except csv.Error as exc:
        raise CsvError(f"{name}: not readable as CSV ({exc}); nothing was written") from None
    ours = [raw.values(record) for record in raw.records]
    for index, (theirs, mine) in enumerate(zip(expected, ours, strict=False)):
        if (theirs or [""]) != mine:
            raise CsvError(f"{name}: cannot split record {index + 1} (line {raw.records[index].line}) safely;"
                           " it may be malformed CSV. Nothing was written")
    if len(expected) != len(ours):
        raise CsvError(f"{name}: {len(expected)} records by the csv module but {len(ours)} by the splitter;"
                       " nothing was written")
