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


def test_an_unchanged_rescan_costs_the_same_statements_at_any_size_and_refreshes_last_seen(
        engine, settings, tmp_path: Path) -> None:
    from catalogcap.store.models import AssetPath

    root = tmp_path / "catalog"
    for n in range(12):
        make_image(root / "a" / f"p{n:02d}.png", (n * 20, 10, 200), size=(8 + n % 5, 8))
    scan(engine, [root], settings)
    small = _statements(engine, lambda: scan(engine, [root], settings))
    for n in range(36):  # three times the files, in more folders, one of them nested
        make_image(root / f"b{n % 3}" / ("c" if n % 2 else "") / f"q{n:02d}.png", (10, n * 7, 100), size=(9, 8))
    assert scan(engine, [root], settings).outcomes["new"] == 36
    with engine.connect() as connection:
        before = dict(connection.execute(sa.select(AssetPath.path, AssetPath.last_seen)).all())
    updates: list[str] = []

    def seen(_conn, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            updates.append(statement)

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        counts: list[int] = []
        report = {}
        large = _statements(engine, lambda: report.setdefault("r", scan(
            engine, [root], settings, advance=counts.append, progress=lambda item: counts.append(-1),
            progress_unchanged=False)))
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert report["r"].outcomes["unchanged"] == report["r"].found == 48 and report["r"].missing == 0
    assert large == small, f"{small} statements for 12 unchanged files, {large} for 48"
    assert len(updates) == 1, updates  # last_seen of every unchanged file, in one statement
    assert sum(counts) == 48 and -1 not in counts  # counted per folder; no item callback for unchanged files
    with engine.connect() as connection:
        after = dict(connection.execute(sa.select(AssetPath.path, AssetPath.last_seen)).all())
    assert after.keys() == before.keys() and all(after[p] >= before[p] for p in after)
    assert sum(after[p] > before[p] for p in after) == 48


def test_a_rescan_after_changes_registers_new_and_changed_files_and_marks_vanished_ones(
        engine, settings, tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    for n in range(10):
        make_image(root / f"d{n % 2}" / f"p{n}.png", (n * 25, 40, 90), size=(8 + n, 8))
    scan(engine, [root], settings)
    (root / "d0" / "p0.png").unlink()
    make_image(root / "d1" / "p1.png", "black", size=(30, 30))
    os.utime(root / "d1" / "p1.png", ns=(1, 1))
    make_image(root / "d2" / "new.png", "green", size=(11, 11))
    seen: list[tuple[str, str]] = []
    report = scan(engine, [root], settings, progress=lambda item: seen.append((item.path.name, item.outcome)))
    assert (report.outcomes["new"], report.outcomes["changed"], report.outcomes["unchanged"], report.missing) == (
        1, 1, 8, 1)
    assert ("new.png", "new") in seen and ("p1.png", "changed") in seen and len(seen) == 10  # every file by default


def test_a_file_named_by_itself_is_registered_with_its_sidecar(engine, settings, tmp_path: Path) -> None:
    from sqlmodel import select

    from catalogcap.store.database import read_session
    from catalogcap.store.models import Product

    image = make_image(tmp_path / "shop" / "lamp.png", "blue", size=(12, 12))
    (tmp_path / "shop" / "lamp.png.json").write_text('{"title": "Brass lamp"}')
    report = scan(engine, [image], settings)
    assert report.outcomes["new"] == 1 and report.found == 1
    with read_session(engine) as session:
        assert [p.title for p in session.exec(select(Product).where(Product.source == "sidecar")).all()] == [
            "Brass lamp"]
