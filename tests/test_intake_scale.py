"""Intake at catalog scale: a rescan compares files with the store in bulk (statements per
chunk of files, not per file), and still sees every change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
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


# -- first registration in bulk ----------------------------------------------------------------


def _rows(engine):
    from catalogcap.store.models import Asset, AssetPath, Job

    with engine.connect() as connection:
        assets = connection.execute(sa.select(Asset.id, Asset.state, Asset.error)).all()
        paths = dict(connection.execute(sa.select(AssetPath.path, AssetPath.asset_id)).all())
        jobs = connection.execute(sa.select(Job.asset_id, Job.state)).all()
    return assets, paths, jobs


def test_a_first_scan_of_new_files_costs_statements_per_chunk_and_queues_each_once(
        engine, settings, tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    for n in range(12):
        make_image(root / "a" / f"p{n:02d}.png", (n * 20, 10, 200), size=(8 + n % 5, 8))
    report = {}
    small = _statements(engine, lambda: report.setdefault("r", scan(engine, [root], settings)))
    assert report["r"].outcomes["new"] == 12
    other = tmp_path / "more"
    for n in range(120):  # ten times the files, in more folders, one of them nested
        make_image(other / f"b{n % 3}" / ("c" if n % 2 else "") / f"q{n:03d}.png", (10, n * 2, 100), size=(9, 8))
    seen: list[str] = []
    large = _statements(engine, lambda: report.update(r=scan(engine, [other], settings,
                                                             progress=lambda item: seen.append(item.outcome))))
    assert report["r"].outcomes["new"] == report["r"].found == 120 and seen == ["new"] * 120
    assert large <= small + 4, f"{small} statements for 12 new files, {large} for 120"
    assert large < 40, f"{large} statements for a first scan of 120 files"
    assets, paths, jobs = _rows(engine)
    assert len(assets) == len(paths) == 132 and {state for _, state, _ in assets} == {"queued"}
    assert sorted(asset_id for asset_id, _ in jobs) == sorted(asset_id for asset_id, _, _ in assets)  # one job each
    assert {state for _, state in jobs} == {"pending"}
    again = scan(engine, [root, other], settings)
    assert again.outcomes["unchanged"] == 132 and len(_rows(engine)[2]) == 132


def test_identical_files_in_a_chunk_and_copies_of_stored_ones_become_one_asset(
        engine, settings, tmp_path: Path) -> None:
    import shutil

    from PIL.PngImagePlugin import PngInfo

    stored = make_image(tmp_path / "old" / "lamp.png", "blue", size=(20, 20))
    assert scan(engine, [tmp_path / "old"], settings).outcomes["new"] == 1
    root = tmp_path / "new"
    make_image(root / "a" / "vase.png", "green", size=(21, 21))
    shutil.copyfile(root / "a" / "vase.png", (root / "b").mkdir(parents=True) or root / "b" / "vase-copy.png")
    shutil.copyfile(stored, root / "b" / "lamp-copy.png")  # bytes the store already has
    tagged = PngInfo()
    tagged.add_text("Description", "a cup")  # the same picture, other metadata: other bytes, one asset
    make_image(root / "a" / "cup.png", "red", size=(22, 22))
    make_image(root / "c" / "cup-tagged.png", "red", size=(22, 22), pnginfo=tagged)
    for n in range(5):
        make_image(root / "d" / f"other{n}.png", (n * 40, 0, 0), size=(10, 10))
    seen: dict[str, tuple[str, int]] = {}
    report = scan(engine, [root], settings, progress=lambda item: seen.setdefault(item.path.name,
                                                                                 (item.outcome, item.asset_id)))
    assert report.found == 10 and report.outcomes["rejected"] == 0
    assert seen["vase.png"][0] == "new" and seen["vase-copy.png"] == ("duplicate", seen["vase.png"][1])
    assert seen["cup.png"][0] == "new" and seen["cup-tagged.png"] == ("duplicate", seen["cup.png"][1])
    assets, paths, jobs = _rows(engine)
    assert seen["lamp-copy.png"][0] == "duplicate" and seen["lamp-copy.png"][1] == paths[str(stored)]
    assert len(assets) == 1 + 2 + 5 and len(paths) == 11
    assert sorted(asset_id for asset_id, _ in jobs) == sorted(asset_id for asset_id, _, _ in assets)  # queued once
    assert scan(engine, [root], settings).outcomes["unchanged"] == 10


def test_a_bad_file_in_a_chunk_is_rejected_with_its_reason_and_the_others_register(
        engine, settings, tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    for n in range(8):
        make_image(root / f"good{n}.png", (n * 30, 90, 10), size=(12, 12))
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 20)
    (root / "broken-too.png").write_bytes((root / "broken.png").read_bytes())  # the same bad bytes
    (root / "notes.jpg").write_text("a text file with an image's name")
    os.mkfifo(root / "fifo.png")
    seen: dict[str, object] = {}
    report = scan(engine, [root], settings, progress=lambda item: seen.setdefault(item.path.name, item))
    assert report.outcomes["new"] == 8 and report.outcomes["rejected"] == 4 and report.found == 12
    reasons = {Path(r["path"]).name: r["reason"] for r in report.rejections}
    assert set(reasons) == {"broken.png", "broken-too.png", "notes.jpg", "fifo.png"}
    assert reasons["fifo.png"].startswith("unreadable: not a regular file") and seen["fifo.png"].asset_id is None
    assert reasons["broken.png"] == reasons["broken-too.png"] and seen["broken.png"].asset_id == seen[
        "broken-too.png"].asset_id
    assets, _, jobs = _rows(engine)
    rejected = {asset_id: error for asset_id, state, error in assets if state == "rejected"}
    assert set(rejected) == {seen["broken.png"].asset_id, seen["notes.jpg"].asset_id}
    assert rejected[seen["notes.jpg"].asset_id] == reasons["notes.jpg"]
    assert len(jobs) == 8 and not set(rejected) & {asset_id for asset_id, _ in jobs}
    # the same as one file at a time gives
    from catalogcap.intake import register_file

    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "notes.jpg").write_text("a text file with an image's name")
    assert register_file(engine, alone / "notes.jpg", settings).reason == reasons["notes.jpg"]
    again = scan(engine, [root], settings)
    assert again.outcomes["unchanged"] == 11 and again.outcomes["rejected"] == 1  # the FIFO again: no rows for it


def test_a_chunk_another_scanner_registered_into_meanwhile_goes_file_by_file(
        engine, settings, tmp_path: Path, monkeypatch) -> None:
    from catalogcap import intake

    root = tmp_path / "catalog"
    for n in range(6):
        make_image(root / f"p{n}.png", (n * 40, 20, 20), size=(10, 10))
    real = intake._read_new_bytes
    raced: list[Path] = []

    def racing(path, *args):  # another process registers the first file between the reads and the inserts
        if not raced:
            raced.append(path)
            assert intake.register_file(engine, path, settings).outcome == "new"
        return real(path, *args)

    monkeypatch.setattr(intake, "_read_new_bytes", racing)
    report = scan(engine, [root], settings)
    assert report.found == 6 and report.outcomes["new"] == 5 and report.outcomes["unchanged"] == 1
    assets, paths, jobs = _rows(engine)
    assert len(assets) == len(paths) == len(jobs) == 6


def test_a_chunk_that_hits_a_unique_constraint_is_rolled_back_whole_and_goes_file_by_file(
        engine, settings, tmp_path: Path, monkeypatch) -> None:
    from catalogcap import intake

    root = tmp_path / "catalog"
    for n in range(6):
        make_image(root / f"p{n}.png", (n * 40, 20, 20), size=(10, 10))
    first = root / "p0.png"
    assert intake.register_file(engine, first, settings).outcome == "new"
    # the checks miss it (as a concurrent insert on PostgreSQL, not yet committed when they ran)
    monkeypatch.setattr(intake, "_known_of", lambda *args: (set(), set()))
    assert intake.register_new(engine, sorted(root.iterdir()), settings) == [None] * 6  # all left to register_file
    assets, paths, jobs = _rows(engine)
    assert len(assets) == len(paths) == len(jobs) == 1  # nothing of the failed chunk was kept
    monkeypatch.undo()
    report = scan(engine, [root], settings)
    assert (report.outcomes["new"], report.outcomes["unchanged"]) == (5, 1) and len(_rows(engine)[0]) == 6


def test_a_chunk_that_deadlocks_with_another_scanner_goes_file_by_file(
        engine, settings, tmp_path: Path, monkeypatch) -> None:
    from catalogcap import intake

    root = tmp_path / "catalog"
    for n in range(4):
        make_image(root / f"p{n}.png", (n * 40, 20, 90), size=(10, 10))

    class Deadlock(Exception):
        sqlstate = "40P01"  # PostgreSQL's deadlock_detected: two chunks inserting the same bytes in other orders

    def deadlocked(*_args):
        raise sa.exc.OperationalError("INSERT INTO assets ...", {}, Deadlock())

    monkeypatch.setattr(intake, "_insert_new", deadlocked)
    assert intake.register_new(engine, sorted(root.iterdir()), settings) == [None] * 4
    report = scan(engine, [root], settings)  # each chunk left to register_file
    assert report.outcomes["new"] == 4 and len(_rows(engine)[2]) == 4

    def broken(*_args):
        raise sa.exc.OperationalError("INSERT INTO assets ...", {}, OSError("disk I/O error"))

    monkeypatch.setattr(intake, "_insert_new", broken)
    make_image(root / "p9.png", "black", size=(10, 10))
    with pytest.raises(sa.exc.OperationalError):  # any other database error is not hidden
        scan(engine, [root], settings)


def test_two_scanners_registering_the_same_new_folder_at_once_make_each_asset_once(
        engine, settings, tmp_path: Path) -> None:
    import shutil
    import threading

    from catalogcap.store.database import create_store_engine

    root = tmp_path / "catalog"
    for n in range(40):
        make_image(root / f"d{n % 4}" / f"p{n:02d}.png", (n * 6, 30, 60), size=(10, 10))
    (root / "copies").mkdir()
    for n in range(0, 40, 4):  # byte-identical copies in another folder
        shutil.copyfile(root / f"d{n % 4}" / f"p{n:02d}.png", root / "copies" / f"c{n:02d}.png")
    reports, errors = [], []
    start = threading.Barrier(2)

    def scanner() -> None:
        other = create_store_engine(settings.db_url)
        try:
            start.wait()
            reports.append(scan(other, [root], settings))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            other.dispose()

    threads = [threading.Thread(target=scanner) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assets, paths, jobs = _rows(engine)
    assert len(paths) == 50 and len(assets) == 40 and sorted(a for a, _ in jobs) == sorted(a for a, _, _ in assets)
    assert all(report.found == 50 and report.outcomes["rejected"] == 0 for report in reports)
    assert sum(report.outcomes["new"] for report in reports) == 40  # each asset new to one of them only
