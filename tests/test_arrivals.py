"""Arrival rules fed real watchdog event objects and a fake clock: no sleeping, no observer."""

from __future__ import annotations

import os
from pathlib import Path

from watchdog.events import (
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
)

from catalogcap.settings import WatchSettings
from catalogcap.watch.arrivals import ArrivalHandler, StabilityTracker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def setup(quiet: float = 2.0) -> tuple[Clock, StabilityTracker, ArrivalHandler, list[Path], list[Path]]:
    clock, stable, gone = Clock(), [], []
    tracker = StabilityTracker(quiet, stable.append, clock=clock)
    handler = ArrivalHandler(tracker, WatchSettings(), gone.append)
    return clock, tracker, handler, stable, gone


def write(path: Path, data: bytes = b"\xff\xd8 jpeg bytes") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_file_is_released_once_it_stays_unchanged_for_the_quiet_period(tmp_path: Path) -> None:
    clock, tracker, handler, stable, _ = setup()
    photo = write(tmp_path / "shirt.jpg")
    handler.dispatch(FileCreatedEvent(str(photo)))
    assert tracker.check() == []  # first look: size and mtime recorded, nothing released
    clock.now += 1.9
    assert tracker.check() == []
    clock.now += 0.2
    assert tracker.check() == [photo] and stable == [photo] and len(tracker) == 0


def test_a_file_still_being_written_restarts_its_quiet_period(tmp_path: Path) -> None:
    clock, tracker, handler, stable, _ = setup()
    photo = write(tmp_path / "big.jpg", b"part one")
    handler.dispatch(FileCreatedEvent(str(photo)))
    tracker.check()
    clock.now += 1.5
    with photo.open("ab") as fp:
        fp.write(b" and part two")
    handler.dispatch(FileModifiedEvent(str(photo)))
    tracker.check()
    clock.now += 1.5  # 3 s since creation, only 1.5 since the last write
    assert tracker.check() == []
    clock.now += 0.6
    assert tracker.check() == [photo] and stable == [photo]


def test_temporary_names_and_hidden_folders_are_not_arrivals(tmp_path: Path) -> None:
    _clock, tracker, handler, _stable, _ = setup()
    for name in (".shirt.jpg.Xy12ab", "shirt.jpg.part", "shirt.jpg.crdownload", "notes.txt"):
        handler.dispatch(FileCreatedEvent(str(write(tmp_path / name))))
    handler.dispatch(FileClosedEvent(str(write(tmp_path / ".cache" / "thumb.jpg"))))
    assert len(tracker) == 0


def test_a_rename_into_place_is_the_arrival_and_the_old_name_is_gone(tmp_path: Path) -> None:
    clock, tracker, handler, stable, gone = setup()
    temp = write(tmp_path / "shirt.jpg.part")
    handler.dispatch(FileCreatedEvent(str(temp)))
    final = tmp_path / "shirt.jpg"
    os.rename(temp, final)
    handler.dispatch(FileMovedEvent(str(temp), str(final)))
    assert gone == []  # the temporary name was never an image of the catalog
    tracker.check()
    clock.now += 2.0
    assert tracker.check() == [final]
    renamed = tmp_path / "red-shirt.jpg"
    os.rename(final, renamed)
    handler.dispatch(FileMovedEvent(str(final), str(renamed)))
    assert gone == [final]
    tracker.check()
    clock.now += 2.0
    assert tracker.check() == [renamed] and stable == [final, renamed]


def test_a_folder_moved_into_place_brings_its_files(tmp_path: Path) -> None:
    clock, tracker, handler, _stable, _ = setup()
    staging = tmp_path / "staging"
    for name in ("a.jpg", "sub/b.png", "sub/.hidden.jpg", "readme.txt"):
        write(staging / name)
    target = tmp_path / "catalog" / "spring"
    target.parent.mkdir()
    os.rename(staging, target)
    handler.dispatch(DirMovedEvent(str(staging), str(target)))
    tracker.check()
    clock.now += 2.0
    assert sorted(tracker.check()) == [target / "a.jpg", target / "sub" / "b.png"]


def test_a_file_deleted_before_it_settled_is_forgotten_and_reported(tmp_path: Path) -> None:
    clock, tracker, handler, _stable, gone = setup()
    photo = write(tmp_path / "mug.png")
    handler.dispatch(FileCreatedEvent(str(photo)))
    photo.unlink()
    handler.dispatch(FileDeletedEvent(str(photo)))
    clock.now += 5.0
    assert tracker.check() == [] and gone == [photo] and len(tracker) == 0


def test_a_deferred_file_waits_its_longer_quiet_period_unless_it_changes(tmp_path: Path) -> None:
    clock, tracker, _handler, _stable, _ = setup()
    photo = write(tmp_path / "cut.jpg")
    tracker.defer(photo, 10.0)
    clock.now += 9.0
    assert tracker.check() == []
    clock.now += 1.0
    assert tracker.check() == [photo]
