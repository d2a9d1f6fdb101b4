"""The jsonl and csv exporters, and the file helpers every exporter should use:
`write_atomic` (temporary file in the same folder, then rename) and `safe_join` (a name
taken from the catalog never leaves the folder the user gave). CSV writers pass their
cells through `catalogcap.csvcells.neutralise` so no spreadsheet runs a caption as a formula."""

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

from catalogcap import csvcells
from catalogcap.errors import CatalogcapError, PathOutsideRoot
from catalogcap.plugins.events import CaptionEvent

CSV_FIELDS = ("id", "path", "fingerprint", "kind", "state", "text", "model_text", "model", "adapter",
              "reviewer", "reviewed_at")
Report = dict[str, Any]


def safe_join(root: str | Path, relative: str | Path) -> Path:
    """`root / relative`, refused when it would resolve (following `..` and symlinks) outside `root`."""
    root_path = Path(root).resolve()
    rel = Path(relative)
    if rel.is_absolute() or not rel.parts:
        raise PathOutsideRoot(f"{str(relative)!r} is not a relative file name inside {root_path}")
    target = (root_path / rel).resolve()
    if target == root_path or not target.is_relative_to(root_path):
        raise PathOutsideRoot(f"{str(relative)!r} would be written to {target}, outside {root_path}; refused")
    return target


def write_atomic(dest: str | Path | None, data: str | bytes) -> None:
    """Write to `dest` via a temporary file in the same folder and a rename ("-" or None: stdout).

    Readers never see a half-written file, and a crash leaves the old file intact. The
    file keeps the mode of the one it replaces (new files get 0644 less the umask)."""
    if dest in (None, "-"):
        if isinstance(data, bytes):
            sys.stdout.buffer.write(data)
        else:
            sys.stdout.write(data)
        sys.stdout.flush()
        return
    dest = Path(dest)
    if dest.is_dir():
        raise CatalogcapError(f"cannot write {dest}: it is a folder; give a file name")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _mode_for(dest))
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mode_for(dest: Path) -> int:
    try:
        return dest.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def export_jsonl(events: Iterable[CaptionEvent], dest: str | Path | None, options: dict[str, Any]) -> Report:
    lines = [json.dumps(event.to_json(), ensure_ascii=False) for event in events]
    write_atomic(dest, "".join(line + "\n" for line in lines))
    return {"written": len(lines), "dest": str(dest or "-")}


def export_csv(events: Iterable[CaptionEvent], dest: str | Path | None, options: dict[str, Any]) -> Report:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    count = 0
    for event in events:
        writer.writerow({key: csvcells.neutralise(value) for key, value in event.to_json().items()})
        count += 1
    write_atomic(dest, buffer.getvalue())
    return {"written": count, "dest": str(dest or "-")}
