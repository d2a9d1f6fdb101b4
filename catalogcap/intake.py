"""Registering image files in the store: fingerprint, dedupe, moves, changes, rejections.

`register` classifies one file as new / unchanged / moved / duplicate / changed /
rejected, writes the asset, its path and (for new bytes) a captioning job in one
transaction. A file whose size and mtime match what the store saw last time is not even
read again, so rescanning a large catalog costs one stat per file. Files new to the store
are registered by `register_new`, 500 at a time in one transaction of a few statements,
with the same outcomes.
"""

from __future__ import annotations

import errno
import fnmatch
import functools
import os
import re
import stat as stat_module
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from catalogcap import images
from catalogcap.fingerprint import content_id, fingerprint_file
from catalogcap.settings import Settings
from catalogcap.store.database import read_session, write_session
from catalogcap.store.models import Asset, AssetPath, Caption, Job, utcnow
from catalogcap.store.queue import enqueue, notify_queued

# "metadata": the file's bytes changed but its picture did not (a metadata-only rewrite): same asset, no job
OUTCOMES = ("new", "unchanged", "metadata", "moved", "duplicate", "changed", "rejected", "vanished")


@dataclass(frozen=True)
class Registered:
    path: Path
    outcome: str
    asset_id: int | None = None
    reason: str | None = None  # human-readable, for rejections


@dataclass
class ScanReport:
    found: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    rejections: list[dict[str, str]] = field(default_factory=list)
    missing: int = 0
    asset_ids: set[int] = field(default_factory=set)
    unreadable_folders: list[dict[str, str]] = field(default_factory=list)

    def add(self, item: Registered) -> None:
        self.outcomes[item.outcome] += 1
        if item.outcome == "rejected":
            self.rejections.append({"path": display(item.path), "reason": item.reason or "rejected"})
        if item.asset_id is not None:
            self.asset_ids.add(item.asset_id)


def matches(name: str, include: Iterable[str], ignore: Iterable[str]) -> bool:
    """Case-insensitive glob test on a file name: included and not ignored."""
    wanted, unwanted = _globs(tuple(include), tuple(ignore))
    lower = name.lower()
    return wanted.match(lower) is not None and (unwanted is None or unwanted.match(lower) is None)


@functools.lru_cache(maxsize=32)
def _globs(include: tuple[str, ...], ignore: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str] | None]:
    """The include and ignore globs as one compiled regex each (a walk tests every name)."""
    def one(patterns: tuple[str, ...]) -> re.Pattern[str]:
        return re.compile("|".join(f"(?:{fnmatch.translate(p.lower())})" for p in patterns) or "(?!)")
    return one(include), (one(ignore) if ignore else None)


BAD_NAME = "file name is not valid UTF-8 (an old Latin-1 or Windows name?); rename the file"


def utf8_name(path: Path) -> bool:
    """Whether `path` can be stored and shown as text (names of undecodable bytes cannot)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def display(path: Path | str) -> str:
    """`path` printable anywhere: undecodable bytes shown as U+FFFD."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


NOT_REGULAR = "unreadable: not a regular file (a FIFO, device, socket or folder)"


def present(path: Path | str) -> bool | None:
    """Whether `path` exists: True, False, or None when it cannot be told (a folder on the way
    is unreadable): such a file is not declared gone."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG):
            return False
        return None
    return True


def iter_images(root: Path, settings: Settings,
                on_unreadable: Callable[[Path, OSError], None] | None = None) -> Iterator[Path]:
    """Image files under `root` (recursive, sorted, hidden folders and ignored names skipped);
    a folder that cannot be listed is passed to `on_unreadable` (and skipped)."""
    if not root.is_dir():  # a file given by name (register_file rejects a FIFO or device for what it is)
        if root.exists() and matches(root.name, settings.watch.include, settings.watch.ignore):
            yield root
        return

    def report(exc: OSError) -> None:
        if on_unreadable is not None:
            on_unreadable(Path(exc.filename or root), exc)

    for dirpath, dirnames, filenames in os.walk(root, onerror=report):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if matches(name, settings.watch.include, settings.watch.ignore):
                yield Path(dirpath) / name


def rejection_reason(exc: images.ImageRejected) -> str:
    """The reason without the path, as stored and listed: "corrupt: image file is truncated"."""
    return f"{images.REASONS.get(exc.code, exc.code)}: {exc.detail}"


def picture_id(path: Path, settings: Settings, fingerprint: str) -> str:
    """The `content_id` of `path`, or its byte `fingerprint` when the picture cannot be read (so
    the asset is marked as computed, and only identical bytes will ever match it)."""
    try:
        return content_id(path, max_pixels=settings.max_pixels) or fingerprint
    except OSError:
        return fingerprint


def _reject(session: Session, path: Path, stat: os.stat_result, fingerprint: str, exc: images.ImageRejected,
            now, content: str) -> Registered:
    asset = session.exec(select(Asset).where(Asset.fingerprint == fingerprint)).first()
    if asset is None:
        asset = Asset(fingerprint=fingerprint, content_id=content, size=stat.st_size, state="rejected",
                      error=str(rejection_reason(exc)), created_at=now, updated_at=now)
        session.add(asset)
        session.flush()
    _attach_path(session, asset, path, stat, now)
    return Registered(path, "rejected", asset.id, rejection_reason(exc))


def _missing_if_orphaned(session: Session, asset_id: int, now) -> None:
    """Mark an asset missing when none of its paths is live any more (captions and reviews stay)."""
    live = session.exec(
        select(AssetPath).where(AssetPath.asset_id == asset_id, col(AssetPath.missing).is_(False))
    ).first()
    asset = session.get(Asset, asset_id)
    if live is None and asset is not None and asset.missing_since is None:
        asset.missing_since = now
        session.add(asset)


def _drop_superseded(session: Session, asset_id: int, now) -> bool:
    """The older version of a file that now holds other bytes (a replaced photo, a half-written
    copy), when no other path ever had it: its jobs go, and its pending captions become
    `superseded` (kept for history; out of review, exports and training), so no pathless caption
    waits in the review queue. An old version without any caption (never captioned, or rejected)
    is deleted: nothing to keep, no junk in `status`. Returns True when that is all: False when
    the asset keeps reviewed captions (or other paths), so the caller marks it missing."""
    if session.exec(select(AssetPath.id).where(AssetPath.asset_id == asset_id)).first() is not None:
        return False
    session.execute(sa.delete(Job).where(col(Job.asset_id) == asset_id))
    if session.exec(select(Caption.id).where(Caption.asset_id == asset_id)).first() is None:
        session.execute(sa.delete(Asset).where(col(Asset.id) == asset_id))
        return True
    session.execute(
        sa.update(Caption).where(col(Caption.asset_id) == asset_id, Caption.state == "pending")
        .values(state="superseded", version=Caption.version + 1, updated_at=now)
    )
    reviewed = session.exec(select(Caption.id).where(
        Caption.asset_id == asset_id, col(Caption.state).not_in(("pending", "superseded")))).first()
    return reviewed is None  # only history: an old version, not a missing image


def _revive(session: Session, asset_id: int, now) -> None:
    """Bytes seen again at a live path: captions superseded when their file changed are pending again."""
    session.execute(
        sa.update(Caption).where(col(Caption.asset_id) == asset_id, Caption.state == "superseded")
        .values(state="pending", version=Caption.version + 1, updated_at=now)
    )


def _attach_path(session: Session, asset: Asset, path: Path, stat: os.stat_result, now) -> None:
    """Point `path` at `asset` (live). The asset the path held before may be left without a file:
    it is superseded or marked missing; the asset attached is no longer missing, and captions of
    it that a file change had superseded come back to the review queue."""
    row = session.exec(select(AssetPath).where(AssetPath.path == str(path))).first()
    if row is None:
        row = AssetPath(asset_id=asset.id, path=str(path), size=stat.st_size, mtime_ns=stat.st_mtime_ns,
                        first_seen=now, last_seen=now)
    previous = row.asset_id if row.id is not None and row.asset_id != asset.id else None
    gained = row.id is None or previous is not None or row.missing
    row.asset_id, row.size, row.mtime_ns, row.missing, row.last_seen = (
        asset.id, stat.st_size, stat.st_mtime_ns, False, now)
    session.add(row)
    if previous is not None:  # the file's bytes changed: its old version may have no file left
        session.flush()
        if not _drop_superseded(session, previous, now):
            _missing_if_orphaned(session, previous, now)
    if gained:
        _revive(session, asset.id, now)
    if asset.missing_since is not None:
        asset.missing_since = None
        session.add(asset)


Probe = images.ImageInfo | images.ImageRejected


def probe_file(path: Path, settings: Settings) -> Probe:
    """The header of `path` under the store's budgets, or why it is refused (never raises it)."""
    try:
        return images.probe(path, max_pixels=settings.max_pixels, max_bytes=int(settings.max_file_mb * 2**20))
    except images.ImageRejected as exc:
        return exc


def register(session: Session, path: Path, settings: Settings, *, fingerprint: str | None = None,
             hashed: tuple[int, int] | None = None, probed: Probe | None = None,
             content: str | None = None, embedded_alt: str | None = None) -> Registered:
    """Classify and record one file inside the caller's transaction. `fingerprint`, `probed` and
    `content` (sha256, header, picture id) were computed outside it from the file as it was at
    `hashed` (size, mtime), so the write lock is not held while reading; a file changed since is
    read again. `content` of an unchanged file fills in an asset's missing content id.
    `embedded_alt`: human alt text read from the file's XMP, kept if the bytes are new."""
    path = path.absolute()
    now = utcnow()
    try:
        stat = path.stat()
    except FileNotFoundError:
        return Registered(path, "vanished")
    except OSError as exc:
        return Registered(path, "rejected", None, f"unreadable: {exc.strerror or exc}")
    if not stat_module.S_ISREG(stat.st_mode):
        return Registered(path, "rejected", None, NOT_REGULAR)
    known = session.exec(select(AssetPath).where(AssetPath.path == str(path))).first()
    if known is not None and not known.missing and known.size == stat.st_size and known.mtime_ns == stat.st_mtime_ns:
        known.last_seen = now
        session.add(known)
        asset = session.get(Asset, known.asset_id)
        if asset is not None and asset.content_id is None and content is not None and hashed == (
                stat.st_size, stat.st_mtime_ns):
            asset.content_id = content  # a store from before 0004: learn the picture's identity now
            session.add(asset)
        if asset is not None and asset.state == "rejected":
            return Registered(path, "unchanged", known.asset_id, asset.error)
        return Registered(path, "unchanged", known.asset_id)
    if hashed != (stat.st_size, stat.st_mtime_ns):
        fingerprint, probed, content = None, None, None  # the file changed after it was read
    if fingerprint is None:
        try:
            fingerprint = fingerprint_file(path)
        except OSError as exc:
            return Registered(path, "rejected", None, f"unreadable: {exc.strerror or exc}")
    previous_asset_id = known.asset_id if known is not None else None
    existing = session.exec(select(Asset).where(Asset.fingerprint == fingerprint)).first()
    retagged = False
    if existing is None:
        content = content or picture_id(path, settings, fingerprint)
        existing = session.exec(select(Asset).where(Asset.content_id == content).order_by(col(Asset.id))).first()
        retagged = existing is not None
    if existing is not None:
        others_live = session.exec(
            select(AssetPath).where(AssetPath.asset_id == existing.id, AssetPath.path != str(path),
                                    col(AssetPath.missing).is_(False))
        ).all()
        others_live = [p for p in others_live if present(p.path) is not False]
        if retagged and not others_live:  # the only copy was rewritten: the asset follows its bytes
            existing.fingerprint, existing.size, existing.updated_at = fingerprint, stat.st_size, now
            session.add(existing)
        _attach_path(session, existing, path, stat, now)
        if existing.state == "rejected":
            return Registered(path, "rejected" if previous_asset_id != existing.id else "unchanged",
                              existing.id, existing.error)
        if existing.state == "queued":
            # never captioned: its job may have failed because the file was gone when its turn came
            enqueue(session, existing.id, now=now)
        if previous_asset_id == existing.id:
            return Registered(path, "metadata" if retagged else "unchanged", existing.id)
        return Registered(path, "duplicate" if others_live else "moved", existing.id)
    info = probed if probed is not None else probe_file(path, settings)
    if isinstance(info, images.ImageRejected):
        return _reject(session, path, stat, fingerprint, info, now, content)
    asset = Asset(fingerprint=fingerprint, content_id=content, size=stat.st_size, width=info.width, height=info.height,
                  format=info.format, state="queued", created_at=now, updated_at=now)
    session.add(asset)
    session.flush()
    _attach_path(session, asset, path, stat, now)
    enqueue(session, asset.id, now=now)
    _import_human_alt_text(session, asset.id, path, embedded_alt, settings)
    return Registered(path, "changed" if known is not None else "new", asset.id)


def _import_human_alt_text(session: Session, asset_id: int, path: Path, embedded: str | None,
                           settings: Settings) -> None:
    """A new asset: alt text a person already wrote becomes its accepted caption, never replaced
    by the model's: a product row's (an import, the API...) first, else the file's own XMP."""
    from catalogcap.products.context import context_for
    from catalogcap.store.captions import import_human

    context = context_for(session, asset_id, [str(path)])
    for text, source in ((context.alt_text, context.alt_text_source), (embedded, "xmp")):
        if text and import_human(session, asset_id, "alt_text", text, source=source or "import",
                                 alt_text_limit=settings.alt_text_limit) is not None:
            return


def embedded_alt_text(path: Path, limit: int) -> str | None:
    """Human alt text in the file's XMP packet (bounded read; never fails the registration)."""
    from catalogcap.products.embedded import alt_text

    try:
        return alt_text(path, limit)
    except Exception:  # a reader bug must not keep an image out of the store
        return None


def register_file(engine: Engine, path: Path, settings: Settings, *,
                  probed: tuple[tuple[int, int], images.ImageInfo] | None = None) -> Registered:
    """`register` in its own write transaction, retried once on a concurrent insert of the same path.
    The file is hashed, and probed when its bytes are new to the store, before the transaction
    starts (a 100,000-page TIFF must not hold the write lock). `probed`: the caller's own probe
    (an API upload's sniff) and the (size, mtime) it saw, used when the file is still that."""
    path = path.absolute()
    if not utf8_name(path):
        return Registered(path, "rejected", None, BAD_NAME)
    fingerprint, hashed, probe, content, embedded = None, None, None, None, None
    try:
        stat = path.stat()
        if not stat_module.S_ISREG(stat.st_mode):  # a FIFO or device would hang the reader
            return Registered(path, "rejected", None, NOT_REGULAR)
        hashed = (stat.st_size, stat.st_mtime_ns)
        with read_session(engine) as session:
            known = session.exec(select(AssetPath).where(AssetPath.path == str(path))).first()
            # a store from before content ids: the asset's fingerprint when its picture id is not known yet
            unidentified = session.exec(select(Asset.fingerprint).where(
                Asset.id == known.asset_id, col(Asset.content_id).is_(None))).first() if known is not None else None
        if known is None or known.missing or (known.size, known.mtime_ns) != hashed:
            fingerprint = fingerprint_file(path)
            with read_session(engine) as session:
                new_bytes = session.exec(select(Asset.id).where(Asset.fingerprint == fingerprint)).first() is None
            if new_bytes:
                probe = probed[1] if probed is not None and probed[0] == hashed else probe_file(path, settings)
                content = picture_id(path, settings, fingerprint)
                embedded = embedded_alt_text(path, settings.alt_text_limit)
        elif unidentified is not None:  # unchanged: read it once now to learn its picture id
            content = picture_id(path, settings, unidentified)
    except OSError:
        fingerprint = None  # vanished or unreadable: `register` reports it
    for attempt in (1, 2):
        try:
            with write_session(engine) as session:
                return register(session, path, settings, fingerprint=fingerprint, hashed=hashed, probed=probe,
                                content=content, embedded_alt=embedded)
        except sa.exc.IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


HASH_THREADS = 4  # files read at once by a bulk registration (hashing releases the GIL)
RACES = ("40P01", "40001")  # PostgreSQL deadlock_detected, serialization_failure


class _Conflict(Exception):
    """Another process registered some of a chunk's paths or bytes while it was being read."""


def _fingerprint_or_none(path: Path) -> str | None:
    try:
        return fingerprint_file(path)
    except OSError:
        return None


def _read_new_bytes(path: Path, stat: os.stat_result, settings: Settings,
                    fingerprint: str) -> tuple[Probe, str, str | None] | None:
    """What `register_file` reads of a file whose bytes are new to the store: header, picture id,
    embedded alt text; None when the file changed since it was hashed or cannot be read any
    more (the per-file path then reads it again, or says why)."""
    try:
        found = (probe_file(path, settings), picture_id(path, settings, fingerprint),
                 embedded_alt_text(path, settings.alt_text_limit))
        after = path.stat()
    except OSError:
        return None
    return found if (after.st_size, after.st_mtime_ns) == (stat.st_size, stat.st_mtime_ns) else None


def register_new(engine: Engine, paths: list[Path], settings: Settings) -> list[Registered | None]:
    """First registration of files whose paths the store does not know, in bulk: the files are
    hashed (and probed, identified, their XMP alt text read) in a few threads outside any
    transaction, then their assets, paths and jobs are inserted in a handful of statements in
    one write transaction. The outcomes are those `register_file` gives one by one: files of
    the same bytes (or the same picture) share one asset, the first `new` (or `rejected` with
    its reason), the others `duplicate`. Returns one result per path, in order; None for a file
    this path leaves to `register_file` (a path or bytes the store knows already, a file that
    changed or vanished while read, every file of a chunk another process registered into
    meanwhile): the caller registers those one by one afterwards."""
    results: list[Registered | None] = [None] * len(paths)
    candidates: list[tuple[int, Path, os.stat_result]] = []
    for index, path in enumerate(paths):
        path = path.absolute()
        if not utf8_name(path):
            results[index] = Registered(path, "rejected", None, BAD_NAME)
            continue
        try:
            stat = path.stat()
        except OSError:
            continue  # vanished or unreadable: register_file reports it
        if not stat_module.S_ISREG(stat.st_mode):  # never opened: a FIFO would hang the reader
            results[index] = Registered(path, "rejected", None, NOT_REGULAR)
            continue
        candidates.append((index, path, stat))
    if not candidates:
        return results
    threads = max(1, min(HASH_THREADS, len(candidates)))
    with ThreadPoolExecutor(threads) as pool:
        fingerprints = list(pool.map(_fingerprint_or_none, [path for _, path, _ in candidates]))
        hashed = [(c, fp) for c, fp in zip(candidates, fingerprints) if fp is not None]
        with engine.connect() as connection:  # what the store knows already goes the per-file way
            known_paths, known_bytes = _known_of(connection, [str(c[1]) for c, _ in hashed],
                                                 [fp for _, fp in hashed])
        hashed = [(c, fp) for c, fp in hashed if str(c[1]) not in known_paths and fp not in known_bytes]
        firsts: dict[str, tuple[Path, os.stat_result]] = {}
        for (_, path, stat), fp in hashed:
            firsts.setdefault(fp, (path, stat))
        read = dict(zip(firsts, pool.map(lambda item: _read_new_bytes(*item[1], settings, item[0]), firsts.items())))
    hashed = [(c, fp) for c, fp in hashed if read[fp] is not None]
    if not hashed:
        return results
    try:
        with write_session(engine) as session:
            written = _insert_new(session, hashed, read, settings)
    except (_Conflict, sa.exc.IntegrityError):
        return results  # another scanner (or the daemon) got there first: all of it one by one
    except sa.exc.DBAPIError as exc:
        # PostgreSQL: two scanners inserting the same new bytes in other orders (a deadlock), or a
        # serialization failure: rolled back whole, so the per-file path takes the chunk as well
        if getattr(exc.orig, "sqlstate", None) not in RACES:
            raise
        return results
    for index, item in written.items():
        results[index] = item
    return results


def _known_of(connection: sa.Connection, paths: list[str], fingerprints: list[str],
              contents: list[str] | None = None) -> tuple[set[str], set[str]]:
    """Of `paths`, those the store has a row for (live or missing); of `fingerprints` and
    `contents`, those an asset has (as its fingerprint; as its fingerprint or picture id)."""
    known_paths: set[str] = set()
    known_bytes: set[str] = set()
    contents = contents or []
    for start in range(0, max(len(paths), len(fingerprints), len(contents)), BULK):
        if paths[start:start + BULK]:
            known_paths.update(connection.execute(sa.select(AssetPath.path).where(
                col(AssetPath.path).in_(paths[start:start + BULK]))).scalars())
        if fingerprints[start:start + BULK]:
            known_bytes.update(connection.execute(sa.select(Asset.fingerprint).where(
                col(Asset.fingerprint).in_(fingerprints[start:start + BULK]))).scalars())
        if contents[start:start + BULK]:
            known_bytes.update(connection.execute(sa.select(Asset.content_id).where(
                col(Asset.content_id).in_(contents[start:start + BULK]))).scalars())
    return known_paths, known_bytes


def _insert_new(session: Session, hashed: list[tuple[tuple[int, Path, os.stat_result], str]],
                read: dict[str, tuple[Probe, str, str | None] | None],
                settings: Settings) -> dict[int, Registered]:
    """The inserts of `register_new` inside its write transaction: files still as they were hashed
    and still unknown to the store (checked again now, under the write lock on SQLite; elsewhere
    a concurrent insert fails the unique constraints and the caller goes file by file)."""
    now = utcnow()
    connection = session.connection()
    paths = [str(c[1]) for c, _ in hashed]
    contents = sorted({read[fp][1] for _, fp in hashed if read[fp] is not None})
    known_paths, known_bytes = _known_of(connection, paths, sorted({fp for _, fp in hashed}), contents)
    if known_paths or known_bytes:
        raise _Conflict(f"{len(known_paths)} path(s), {len(known_bytes)} picture(s) registered meanwhile")
    # group by bytes, then by picture, in walk order: the first file of a group makes the asset
    assets: list[dict] = []
    by_fingerprint: dict[str, int] = {}
    by_content: dict[str, int] = {}
    files: list[tuple[int, Path, os.stat_result, int]] = []  # index, path, stat, asset number
    for (index, path, stat), fp in hashed:
        try:
            now_stat = path.stat()
        except OSError:
            continue  # gone meanwhile: register_file says so
        if (now_stat.st_size, now_stat.st_mtime_ns) != (stat.st_size, stat.st_mtime_ns):
            continue  # changed after it was read: read again one by one
        number = by_fingerprint.get(fp)
        if number is None:
            probe, content, _ = read[fp]
            number = by_content.get(content)
            if number is None:
                number = len(assets)
                row = {"fingerprint": fp, "content_id": content, "size": stat.st_size, "missing_since": None,
                       "created_at": now, "updated_at": now}
                if isinstance(probe, images.ImageRejected):
                    row.update(state="rejected", error=rejection_reason(probe), width=None, height=None, format=None)
                else:
                    row.update(state="queued", error=None, width=probe.width, height=probe.height,
                               format=probe.format)
                assets.append(row)
                by_content.setdefault(content, number)
            by_fingerprint[fp] = number
        files.append((index, path, stat, number))
    if not files:
        return {}
    asset_table, path_table = Asset.__table__, AssetPath.__table__
    ids: dict[str, int] = {}
    for start in range(0, len(assets), BULK):
        rows = assets[start:start + BULK]
        session.execute(sa.insert(asset_table), rows)
        ids.update(session.execute(sa.select(Asset.fingerprint, Asset.id).where(
            col(Asset.fingerprint).in_([row["fingerprint"] for row in rows]))).all())
    asset_ids = [ids[row["fingerprint"]] for row in assets]
    session.execute(sa.insert(path_table), [
        {"asset_id": asset_ids[number], "path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
         "missing": False, "source_name": None, "first_seen": now, "last_seen": now}
        for _, path, stat, number in files])
    queued = [asset_ids[number] for number, row in enumerate(assets) if row["state"] == "queued"]
    if queued:
        session.execute(sa.insert(Job.__table__), [
            {"asset_id": asset_id, "state": "pending", "attempts": 0, "last_error": None, "run_after": now,
             "lease_owner": None, "lease_expires": None, "created_at": now, "updated_at": now,
             "finished_at": None} for asset_id in queued])
        notify_queued(session)
    written: dict[int, Registered] = {}
    made: dict[int, Path] = {}  # asset number -> the path that made it
    for index, path, _, number in files:
        row, asset_id = assets[number], asset_ids[number]
        first = made.setdefault(number, path) == path
        if row["state"] == "rejected":
            written[index] = Registered(path, "rejected", asset_id, row["error"])
        else:
            written[index] = Registered(path, "new" if first else "duplicate", asset_id)
    _import_human_alt_texts(session, [(asset_ids[number], path, read[assets[number]["fingerprint"]][2])
                                      for number, path in made.items() if assets[number]["state"] == "queued"],
                            settings)
    return written


def _import_human_alt_texts(session: Session, new: list[tuple[int, Path, str | None]], settings: Settings) -> None:
    """`_import_human_alt_text` of many new assets (id, the path that made it, its XMP alt text):
    one query for the product rows that may name any of them, then only those with text write."""
    from catalogcap.products.context import fold, match_keys, merge, names_the_image, ordered
    from catalogcap.store.captions import import_human
    from catalogcap.store.models import Product

    folded = sorted({fold(str(path)) for _, path, _ in new})
    rows: list[Product] = []
    for start in range(0, len(folded), BULK):
        rows.extend(session.exec(select(Product).where(col(Product.file_folded).in_(folded[start:start + BULK]))).all())
    for asset_id, path, embedded in new:
        context = None
        if rows:
            names, keys = {fold(str(path))}, set(match_keys(str(path)))
            context = merge(ordered([row for row in rows if names_the_image(row, asset_id, names, keys)]))
        for text, source in ((context.alt_text if context else None, context.alt_text_source if context else None),
                             (embedded, "xmp")):
            if text and import_human(session, asset_id, "alt_text", text, source=source or "import",
                                     alt_text_limit=settings.alt_text_limit) is not None:
                break


def mark_missing(engine: Engine, root: Path, seen: set[str] | None = None) -> int:
    """Flag paths under `root` whose files are gone; an asset with no live path is marked
    missing (its captions and reviews are kept). Returns how many paths went missing."""
    root = root.absolute()
    with read_session(engine) as session:
        rows = session.execute(
            sa.select(AssetPath.id, AssetPath.path, AssetPath.asset_id)
            .where(*_under(engine, root), col(AssetPath.missing).is_(False))
        ).all()
    return _mark_gone(engine, [row for row in rows if seen is None or row[1] not in seen])


def _under(engine: Engine, root: Path) -> list[sa.ColumnElement[bool]]:
    """Conditions for the paths below the folder `root`. On SQLite (paths compared as bytes) a
    range the path index answers; elsewhere a prefix match (a range under a locale collation
    is not a prefix)."""
    prefix = str(root).rstrip(os.sep) + os.sep
    if engine.dialect.name == "sqlite":  # BINARY collation: byte order, the same as code point order
        return [col(AssetPath.path) >= prefix, col(AssetPath.path) < prefix[:-1] + chr(ord(os.sep) + 1)]
    return [col(AssetPath.path).startswith(prefix, autoescape=True)]


def _mark_gone(engine: Engine, candidates: list[tuple[int, str, int]]) -> int:
    """Of `candidates` (path id, path, asset id: live paths a walk did not see), flag those whose
    files are gone as missing, and their assets when no live path is left. Returns how many."""
    gone_ids: list[int] = []
    touched: set[int] = set()
    for path_id, path, asset_id in candidates:
        if present(path) is not False:  # there, or hidden behind an unreadable folder: not gone
            continue
        gone_ids.append(path_id)
        touched.add(asset_id)
    if not gone_ids:
        return 0
    now = utcnow()
    with write_session(engine) as session:
        for start in range(0, len(gone_ids), BULK):
            session.execute(sa.update(AssetPath).where(col(AssetPath.id).in_(gone_ids[start:start + BULK]))
                            .values(missing=True))
        session.flush()
        for asset_id in touched:
            _missing_if_orphaned(session, asset_id, now)
    return len(gone_ids)


def mark_path_missing(engine: Engine, path: Path) -> int:
    """A single file was deleted or moved away (watch daemon): same rules as `mark_missing`."""
    path = path.absolute()
    if not utf8_name(path):
        return 0  # never registered
    with write_session(engine) as session:
        row = session.exec(select(AssetPath).where(AssetPath.path == str(path))).first()
        if row is None or row.missing or present(path) is not False:
            return 0
        row.missing = True
        session.add(row)
        session.flush()
        _missing_if_orphaned(session, row.asset_id, utcnow())
    return 1


def scan(engine: Engine, roots: Iterable[Path], settings: Settings, progress=None,
         stop: threading.Event | None = None, advance: Callable[[int], None] | None = None,
         progress_unchanged: bool = True) -> ScanReport:
    """Register every image under `roots`, then mark vanished files missing (not after `stop`:
    an interrupted walk has not seen every file). Unlistable folders are reported, not fatal.
    `progress(item)`: each file's `Registered` (not those found unchanged by size and mtime
    when `progress_unchanged` is False); `advance(n)`: n more files done, about once per folder
    (cheaper than `progress` where only a count is shown)."""
    report = ScanReport()

    def unreadable(folder: Path, exc: OSError) -> None:
        reason = f"unreadable folder: {exc.strerror or exc}; its images are not scanned"
        report.unreadable_folders.append({"path": display(folder), "reason": reason})

    for root in roots:
        root = root.absolute()
        if root.is_dir():
            if not _scan_folder(engine, root, settings, report, unreadable, progress, stop, advance,
                                progress_unchanged):
                return report
            continue
        registered: list[tuple[Path, int]] = []
        for path in iter_images(root, settings, unreadable):  # a file named by itself
            if stop is not None and stop.is_set():
                return report
            report.found += 1
            _record(report, registered, register_file(engine, path, settings), progress)
            if advance is not None:
                advance(1)
        from catalogcap.products.sidecar import sync_images

        sync_images(engine, registered, settings)  # its NAME.json, as for the files of a folder
    return report


BULK = 500  # ids per statement when writing in bulk; files registered one by one between checks of `stop`
LAST_SEEN_BULK = 5000  # path ids per `last_seen` UPDATE of an unchanged rescan


def _scan_folder(engine: Engine, root: Path, settings: Settings, report: ScanReport,
                 unreadable: Callable[[Path, OSError], None], progress, stop: threading.Event | None,
                 advance: Callable[[int], None] | None, progress_unchanged: bool = True) -> bool:
    """`scan` of one folder `root` (absolute). One query loads what the store knows of every live
    path below it; each walked file whose size and mtime still match (and whose picture id is
    known) is unchanged at the cost of one stat, its `last_seen` refreshed in bulk at the end;
    paths new to the store are registered `BULK` at a time by `register_new` (a few statements
    and one transaction per chunk); only the others go through `register_file`, as do the files
    `register_new` leaves (a path it saw go missing, bytes it knows). The paths the walk did not see are then checked
    for `mark_missing`, and the sidecars of folders that have any are read. Returns False when
    `stop` cut the walk short (nothing is marked missing then)."""
    from catalogcap.products.sidecar import SUFFIX, sidecar_keys, sync_images

    with engine.connect() as connection:  # Core rows, not ORM objects: a few columns of every known file
        known = {row[0]: row[1:] for row in connection.execute(
            sa.select(AssetPath.path, AssetPath.id, AssetPath.size, AssetPath.mtime_ns, AssetPath.asset_id)
            .where(*_under(engine, root), col(AssetPath.missing).is_(False))).all()}
        # assets that cannot be unchanged without a look (a store from before picture ids: learn it),
        # and the reasons of rejected ones (few of either; no join over every path)
        unidentified = set(connection.execute(sa.select(Asset.id).where(col(Asset.content_id).is_(None))).scalars())
        rejected = dict(connection.execute(sa.select(Asset.id, Asset.error).where(Asset.state == "rejected")).all())
    sidecar_dirs = {key[len("sidecar:"):].rsplit(os.sep, 1)[0] for key in sidecar_keys(engine)}
    wanted, unwanted = _globs(tuple(settings.watch.include), tuple(settings.watch.ignore))
    registered: list[tuple[Path, int]] = []  # images whose sidecars (NAME.json) are read after the walk
    still: list[int] = []  # path ids of unchanged files, for one bulk `last_seen`
    found = unchanged = 0
    asset_ids = report.asset_ids
    stat_file, is_reg = os.stat, stat_module.S_ISREG
    stopped = False

    def report_error(exc: OSError) -> None:
        unreadable(Path(exc.filename or root), exc)

    pending: list[tuple[str, bool]] = []  # paths new to the store (and whether sidecars may name them)

    def register_pending() -> bool:
        """The new files walked so far, registered in bulk (the few it leaves, one by one);
        False when `stop` cut the one-by-one part short."""
        chunk = pending[:]
        pending.clear()
        done, finished = 0, True
        for (path_name, with_sidecars), item in zip(chunk, register_new(engine, [Path(p) for p, _ in chunk],
                                                                         settings)):
            if item is None:
                if stop is not None and stop.is_set():
                    finished = False
                    break
                item = register_file(engine, Path(path_name), settings)
            _record(report, registered, item, progress, sidecars=with_sidecars)
            done += 1
        report.found += done
        if advance is not None and done:
            advance(done)
        return finished

    for dirpath, dirnames, filenames in os.walk(root, onerror=report_error):
        if stop is not None and stop.is_set():
            stopped = True
            break
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = dirpath if dirpath.endswith(os.sep) else dirpath + os.sep
        names = [name for name in sorted(filenames) if wanted.match(lower := name.lower()) is not None
                 and (unwanted is None or unwanted.match(lower) is None)]
        if not names:
            continue
        sidecars = dirpath in sidecar_dirs or any(name.endswith(SUFFIX) for name in filenames)
        done = 0
        for name in names:
            path_name = folder + name
            row = known.pop(path_name, None)
            if row is not None and row[3] not in unidentified:
                path_id, size, mtime_ns, asset_id = row
                try:
                    stat = stat_file(path_name)
                except OSError:
                    stat = None
                if stat is not None and is_reg(stat.st_mode) and stat.st_size == size and stat.st_mtime_ns == mtime_ns:
                    still.append(path_id)
                    unchanged += 1
                    asset_ids.add(asset_id)
                    if sidecars:
                        registered.append((Path(path_name), asset_id))
                    if progress is not None and progress_unchanged:  # a rejected asset's reason, else None
                        progress(Registered(Path(path_name), "unchanged", asset_id, rejected.get(asset_id)))
                    done += 1
                    continue
            if stop is not None and stop.is_set():
                stopped = True
                break
            if row is None:  # a path new to the store (or one it saw go missing): in bulk
                pending.append((path_name, sidecars))
                if len(pending) >= BULK and not register_pending():
                    stopped = True
                    break
                continue
            _record(report, registered, register_file(engine, Path(path_name), settings), progress,
                    sidecars=sidecars)
            done += 1
        found += done
        if advance is not None and done:
            advance(done)
        if stopped:
            break
    if not stopped and pending and not register_pending():
        stopped = True
    report.found += found
    report.outcomes["unchanged"] += unchanged
    _touch(engine, still)
    if stopped:
        return False
    sync_images(engine, registered, settings)
    # live paths below `root` the walk did not see: gone, or not (an unreadable folder, now ignored)
    report.missing += _mark_gone(engine, [(row[0], path, row[3]) for path, row in known.items()])
    return True


def _record(report: ScanReport, registered: list[tuple[Path, int]], item: Registered, progress, *,
            sidecars: bool = True) -> None:
    """One file's registration: counted in `report`, its sidecar read after the walk (when it got
    an asset and its folder may have sidecars), shown through `progress`."""
    report.add(item)
    if sidecars and item.asset_id is not None and item.outcome not in ("rejected", "vanished"):
        registered.append((item.path, item.asset_id))
    if progress is not None:
        progress(item)


def _touch(engine: Engine, path_ids: list[int]) -> None:
    """`last_seen` of unchanged files, in a few statements for the whole walk."""
    if not path_ids:
        return
    now = utcnow()
    with write_session(engine) as session:
        for start in range(0, len(path_ids), LAST_SEEN_BULK):  # ids from the store: integers, written inline
            ids = ",".join(str(int(path_id)) for path_id in path_ids[start:start + LAST_SEEN_BULK])
            table = AssetPath.__table__  # Core: nothing in the session to synchronise
            session.execute(sa.update(table).where(sa.text(f"asset_paths.id IN ({ids})")).values(last_seen=now))
