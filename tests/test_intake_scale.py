"""Intake at catalog scale: a rescan compares files with the store in bulk (statements per
chunk of files, not per file), and still sees every change."""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

from catalogcap.intake import BULK, scan
from tests.conftest import make_image


def _statements(engine, run) -> int:
    count = 0

    def counted(*_args) -> None:
        nonlocal count
        count += 1

    sa.event.listen(engine, "before_cursor_execute", counted)
    try:
        run()
    finally:
        sa.event.remove(engine, "before_cursor_execute", counted)
    return count


def test_a_rescan_of_unchanged_files_costs_statements_per_chunk_not_per_file(engine, settings, tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    files = 60
    for n in range(files):
        make_image(root / f"d{n % 3}" / f"p{n:03d}.png", (n * 4 % 256, 10, 200), size=(8 + n % 5, 8))
    first = scan(engine, [root], settings)
    assert first.outcomes["new"] == files
    report = {}
    statements = _statements(engine, lambda: report.setdefault("r", scan(engine, [root], settings)))
    assert report["r"].outcomes["unchanged"] == files and report["r"].found == files
    assert statements <= 12, f"{statements} statements for a rescan of {files} unchanged files"
    # a change among them is still seen, and only it goes the slow way
    changed = root / "d1" / "p001.png"
    make_image(changed, "black", size=(30, 30))
    os.utime(changed, ns=(1, 1))
    again = scan(engine, [root], settings)
    assert (again.outcomes["changed"], again.outcomes["unchanged"]) == (1, files - 1)
    assert BULK >= 100
