"""Sidecar files: product fields in a JSON object beside an image.

For `lamp.jpg` catalogcap reads `lamp.jpg.json` (names exactly that image) and `lamp.json`
(names the image called `lamp.*` in that folder; when several images share the stem, such as
`lamp.jpg` and `lamp.png`, it is ambiguous and not used: name it `lamp.jpg.json`). Keys are
field names (`title`, `brand`, `colour`, `alt_text`, any other), values text (numbers are
taken as text; lists, objects, booleans and null are left out).

Each sidecar is one `products` row, source "sidecar", key "sidecar:<absolute path>", bound to
the image's asset. It is read when the image is registered (scan, `watch`) and whenever the
sidecar changes under `watch`; a deleted sidecar removes its row. A sidecar that is not valid
JSON, not an object or over 1 MB is reported (a warning naming the file and the reason) and
changes nothing.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from catalogcap.intake import display, matches
from catalogcap.products.importer import COLUMN_MEANING, identifier
from catalogcap.settings import Settings
from catalogcap.products.consistency import refresh
from catalogcap.store.captions import import_human
from catalogcap.store.database import read_session, write_session
from catalogcap.store.models import PRODUCT_FIELDS, AssetPath, Product, utcnow

log = logging.getLogger("catalogcap.products")
MAX_BYTES = 2**20
MAX_FIELDS = 100
MAX_VALUE_CHARS = 10_000
SUFFIX = ".json"


class SidecarError(Exception):
    """A sidecar that cannot be used; str() names the file and the reason."""


def key_of(sidecar: Path) -> str:
    return f"sidecar:{sidecar.absolute()}"


def is_sidecar(path: Path, settings: Settings) -> bool:
    """Whether `path` is a name a sidecar may have (`*.json`, not ignored)."""
    return path.name.lower().endswith(SUFFIX) and len(path.name) > len(SUFFIX) and matches(
        path.name, ["*" + SUFFIX], settings.watch.ignore)


def candidates(image: Path) -> list[Path]:
    """The sidecars of `image`: `lamp.jpg.json`, then `lamp.json`."""
    return [image.with_name(image.name + SUFFIX), image.with_name(image.stem + SUFFIX)]


def images_beside(sidecar: Path, settings: Settings) -> list[Path]:
    """The images a sidecar describes: `lamp.jpg.json` -> [lamp.jpg]; `lamp.json` -> every
    image `lamp.*` in the folder (one, unless the name is ambiguous)."""
    base = sidecar.name[: -len(SUFFIX)]
    if matches(base, settings.watch.include, settings.watch.ignore):
        return [sidecar.with_name(base)]
    found = []
    try:
        with os.scandir(sidecar.parent) as entries:
            for entry in entries:
                name = entry.name
                if Path(name).stem == base and matches(name, settings.watch.include, settings.watch.ignore):
                    found.append(sidecar.with_name(name))
    except OSError:
        return []
    return sorted(found)


def read(sidecar: Path) -> dict[str, Any]:
    """The sidecar's row values (named fields, `fields`, `alt_text`), or SidecarError."""
    shown = display(sidecar)
    try:
        with open(sidecar, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise SidecarError(f"{shown}: cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise SidecarError(f"{shown}: over {MAX_BYTES:,} bytes; a sidecar holds a few product fields")
    try:
        obj = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise SidecarError(f"{shown}: not UTF-8 (byte offset {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise SidecarError(f"{shown}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise SidecarError(f"{shown}: not a JSON object of fields (it is a {type(obj).__name__})")
    values: dict[str, Any] = {name: None for name in PRODUCT_FIELDS}
    fields: dict[str, str] = {}
    alt = None
    for key, value in list(obj.items())[:MAX_FIELDS]:
        name = identifier(key)
        if not name or isinstance(value, bool) or not isinstance(value, (str, int, float)):
            continue
        text = str(value).strip()[:MAX_VALUE_CHARS]
        if not text:
            continue
        meaning = COLUMN_MEANING.get(name, name)
        if meaning == "alt_text":
            alt = text
        elif meaning in PRODUCT_FIELDS:
            values[meaning] = text
        elif meaning != "file":
            fields[name] = text
    values.update(fields=dict(sorted(fields.items())), alt_text=alt)
    return values


def _asset_of(session: Session, image: Path) -> int | None:
    return session.exec(select(AssetPath.asset_id).where(AssetPath.path == str(image.absolute()),
                                                         col(AssetPath.missing).is_(False))).first()


def _store(session: Session, sidecar: Path, asset_id: int | None, values: dict[str, Any] | None,
           alt_text_limit: int) -> str:
    """Upsert (values given, asset known) or delete the sidecar's row: 'added', 'updated',
    'removed' or 'unchanged'."""
    key = key_of(sidecar)
    row = session.exec(select(Product).where(Product.key == key)).first()
    if values is None or asset_id is None:
        if row is None:
            return "unchanged"
        session.delete(row)
        session.flush()
        if row.asset_id is not None:
            refresh(session, [row.asset_id], alt_text_limit=alt_text_limit)
        return "removed"
    now = utcnow()
    if row is None:
        row = Product(key=key, source="sidecar", origin=str(sidecar.absolute()), asset_id=asset_id,
                      created_at=now, updated_at=now, **values)
        outcome = "added"
    elif row.asset_id != asset_id or any(getattr(row, k) != v for k, v in values.items()):
        for k, v in values.items():
            setattr(row, k, v)
        row.asset_id, row.updated_at = asset_id, now
        outcome = "updated"
    else:
        return "unchanged"
    session.add(row)
    session.flush()
    if values.get("alt_text"):
        import_human(session, asset_id, "alt_text", values["alt_text"], source="sidecar",
                     alt_text_limit=alt_text_limit, now=now)
    refresh(session, [asset_id], alt_text_limit=alt_text_limit)
    return outcome


def _values_for(sidecar: Path, image: Path, settings: Settings) -> dict[str, Any] | None:
    """The sidecar's values when it describes `image` and can be read; else None (warned)."""
    if sidecar.name != image.name + SUFFIX:
        beside = images_beside(sidecar, settings)
        if len(beside) > 1:
            log.warning("%s: several images are named %s.* (%s); name the sidecar after one of them, e.g. %s.json",
                        display(sidecar), sidecar.name[: -len(SUFFIX)], ", ".join(p.name for p in beside),
                        beside[0].name)
            return None
    try:
        return read(sidecar)
    except SidecarError as exc:
        log.warning("sidecar %s; its product data is not used", exc)
        return None


def sidecar_keys(engine: Engine) -> set[str]:
    with read_session(engine) as session:
        return set(session.exec(select(Product.key).where(Product.source == "sidecar")).all())


def sync_image(engine: Engine, image: Path, asset_id: int, settings: Settings,
               known: set[str] | None = None) -> list[str]:
    """Read the sidecars of a registered image into its rows (a sidecar gone: its row removed).
    `known`: the sidecar keys in the store, when the caller has them (a scan), so an image
    without sidecars costs two stats and no query. Returns the outcomes."""
    image = image.absolute()
    found: list[tuple[Path, dict[str, Any] | None]] = []
    for sidecar in candidates(image):
        if sidecar.is_file():
            found.append((sidecar, _values_for(sidecar, image, settings)))
        elif known is None or key_of(sidecar) in known:
            found.append((sidecar, None))
    if not found:
        return []
    outcomes = []
    with write_session(engine) as session:
        for sidecar, values in found:
            if values is None and sidecar.is_file():
                continue  # unreadable or ambiguous now: the row it had stays as it was
            outcomes.append(_store(session, sidecar, asset_id, values, settings.alt_text_limit))
    return outcomes


def sync_sidecar(engine: Engine, sidecar: Path, settings: Settings) -> list[str]:
    """A sidecar appeared, changed or went away (`watch`): update, add or remove its row."""
    sidecar = sidecar.absolute()
    if not sidecar.is_file():
        with write_session(engine) as session:
            return [_store(session, sidecar, None, None, settings.alt_text_limit)]
    beside = images_beside(sidecar, settings)
    if not beside:
        return []  # its image is not here (yet): read when the image is registered
    values = _values_for(sidecar, beside[0], settings)
    if values is None:
        return []
    with write_session(engine) as session:
        asset_id = _asset_of(session, beside[0])
        if asset_id is None:
            return []  # the image is not registered yet: read when it is
        return [_store(session, sidecar, asset_id, values, settings.alt_text_limit)]


def sync_images(engine: Engine, items: Iterable[tuple[Path, int]], settings: Settings) -> None:
    """`sync_image` for each (image, asset id) of a scan; one failing image never stops the rest.
    Each folder is listed once: an image with no sidecar file and no sidecar row costs a set
    lookup, not two stats (a rescan of millions of unchanged files stays a stat per file)."""
    known = sidecar_keys(engine)
    known_dirs = {key[len("sidecar:"):].rsplit(os.sep, 1)[0] for key in known}
    listed: dict[Path, tuple[set[str], bool]] = {}  # folder: its *.json names, whether rows name it
    for image, asset_id in items:
        folder = image.parent
        if folder not in listed:
            if len(listed) > 64:
                listed.clear()
            try:
                with os.scandir(folder) as entries:
                    names = {e.name for e in entries if e.name.endswith(SUFFIX)}
            except OSError:
                names = set()
            listed[folder] = (names, str(folder.absolute()) in known_dirs)
        names, has_rows = listed[folder]
        if not has_rows and not (names and (image.name + SUFFIX in names or image.stem + SUFFIX in names)):
            continue
        try:
            sync_image(engine, image, asset_id, settings, known)
        except Exception:
            log.exception("could not read the sidecars of %s", display(image))
