"""The jsonl and csv exporters: write caption events to a file (atomically) or stdout."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from catalogcap.plugins.events import CaptionEvent

CSV_FIELDS = ("id", "path", "fingerprint", "kind", "state", "text", "model_text", "model", "adapter", "reviewer",
              "reviewed_at")


def write_atomic(dest: str | Path | None, text: str) -> None:
    """Write to `dest` via a temporary file and rename ("-" or None: stdout)."""
    if dest in (None, "-"):
        sys.stdout.write(text)
        return
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_jsonl(events: Iterable[CaptionEvent], dest: str | Path | None, options: dict[str, Any]) -> dict[str, Any]:
    lines = [json.dumps(event.to_json(), ensure_ascii=False) for event in events]
    write_atomic(dest, "".join(line + "\n" for line in lines))
    return {"written": len(lines), "dest": str(dest or "-")}


def export_csv(events: Iterable[CaptionEvent], dest: str | Path | None, options: dict[str, Any]) -> dict[str, Any]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    count = 0
    for event in events:
        writer.writerow(event.to_json())
        count += 1
    write_atomic(dest, buffer.getvalue())
    return {"written": count, "dest": str(dest or "-")}
