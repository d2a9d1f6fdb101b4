"""Writing reviewed captions into XMP: a sidecar beside (or under --out) the image, or embedded.

Every write goes to a temporary file in the target's folder; exiftool writes it, we read it
back and compare, and only then rename it over the target. An embedded copy must hash to the
fingerprint the captions belong to, so a file swapped after planning is skipped. Embedding also decodes the image
before and after and refuses the result unless every pixel of every frame is identical.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from catalogcap.errors import CatalogcapError
from catalogcap.plugins.exporters import safe_join
from catalogcap_xmp import exiftool

ALT_TEXT = "XMP-iptcCore:AltTextAccessibility"
EXT_DESCRIPTION = "XMP-iptcCore:ExtDescrAccessibility"
DC_DESCRIPTION = "XMP-dc:Description"
FIELDS = {"alt_text": (ALT_TEXT,), "description": (EXT_DESCRIPTION, DC_DESCRIPTION)}
EMBED_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff", ".webp"}


class SkipItem(CatalogcapError):
    """One image cannot be written; the others go on."""


@dataclass
class Item:
    """One image and what goes into its XMP: tag -> {language -> text}."""

    image: Path
    fingerprint: str
    texts: dict[str, dict[str, str]] = field(default_factory=dict)
    known: dict[str, set[str]] = field(default_factory=dict)  # kind -> texts catalogcap has for it (ours)
    target: Path | None = None
    temp: Path | None = None
    seen: tuple[int, int] | None = None  # (size, mtime_ns) of the original when copied

    def tags(self) -> dict[str, str]:
        """exiftool tag names: x-default is the bare tag, other languages get a `-lang` suffix."""
        return {tag if lang == "x-default" else f"{tag}-{lang}": text
                for tag, by_lang in self.texts.items() for lang, text in by_lang.items()}


def set_text(item: Item, kind: str, text: str, languages: list[str], known: tuple[str, ...] = ()) -> None:
    for tag in FIELDS[kind]:
        for lang in languages:
            item.texts.setdefault(tag, {})[lang] = text
    item.known.setdefault(kind, set()).update(_norm(t) for t in (text, *known) if t)


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def kinds_of(item: Item) -> list[str]:
    return [kind for kind, tags in FIELDS.items() if any(tag in item.texts for tag in tags)]


def human_text(item: Item, kind: str, records: list[dict[str, str]]) -> str | None:
    """Text a person wrote for `kind` in the image or its sidecar (the x-default value of one of the
    kind's tags that is none of the texts catalogcap has for the image), or None."""
    ours = item.known.get(kind, set())
    for record in records:
        for tag in FIELDS[kind]:
            value = record.get(tag)
            if isinstance(value, str) and value.strip() and _norm(value) not in ours:
                return value
    return None


def drop_kind(item: Item, kind: str) -> None:
    """Write nothing of `kind` into this item's XMP (its human text stays)."""
    for tag in FIELDS[kind]:
        item.texts.pop(tag, None)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(image: Path, naming: str) -> Path:
    """photo.jpg -> photo.xmp (Adobe's naming) or photo.jpg.xmp ("fullname")."""
    return image.with_name(image.name + ".xmp") if naming == "fullname" else image.with_suffix(".xmp")


def plan(item: Item, mode: str, naming: str, out: Path | None, root: Path | None) -> Path:
    """Where this image's XMP goes; the original is only ever the target when embedding in place."""
    image = item.image
    if not image.is_file():
        raise SkipItem(f"{image}: not found (moved or deleted since it was captioned); run `catalogcap scan`")
    if mode == "embed" and image.suffix.lower() not in EMBED_SUFFIXES:
        raise SkipItem(f"{image}: cannot embed XMP in {image.suffix or 'this'} files; use mode=sidecar")
    if sha256_of(image) != item.fingerprint:
        raise SkipItem(f"{image}: its bytes changed since it was captioned (sha256 differs);"
                       " run `catalogcap scan` and review it again")
    if out is None:
        if mode == "embed" and image.is_symlink():
            raise SkipItem(f"{image}: is a symbolic link; embed into a copy with --out instead")
        return image if mode == "embed" else sidecar_path(image, naming)
    assert root is not None
    try:
        relative = image.resolve().relative_to(root)
    except ValueError:
        raise SkipItem(f"{image}: not under root {root}; set -o root=FOLDER to a folder above it") from None
    target = safe_join(out, relative)
    return target if mode == "embed" else sidecar_path(target, naming)


def stage(item: Item, mode: str) -> None:
    """Make the temporary file exiftool writes: a copy of the image (embed) or of the old sidecar."""
    target = item.target
    assert target is not None
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        raise SkipItem(f"{target}: is a symbolic link; refusing to write through it")
    item.temp = target.parent / f".{target.stem}.catalogcap-{secrets.token_hex(4)}{target.suffix}"
    if mode == "embed":
        before = item.image.stat()
        item.seen = (before.st_size, before.st_mtime_ns)
        shutil.copy2(item.image, item.temp)
        after = item.image.stat()
        # `plan` hashed the original earlier: a file replaced since then must not get this image's text
        if (after.st_size, after.st_mtime_ns) != item.seen or sha256_of(item.temp) != item.fingerprint:
            raise SkipItem(f"{item.image}: replaced or changed since it was checked (the sha256 of the copy"
                           " differs from the captioned image's); left alone, run `catalogcap scan` and export"
                           " it again")
    elif target.exists():
        shutil.copy2(target, item.temp)  # keep what others (Lightroom, a DAM) wrote in the sidecar


def pixel_digest(path: Path) -> tuple[str, ...]:
    """Mode, size and a hash of the decoded pixels of every frame."""
    digests = []
    with Image.open(path) as image:
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            digest = hashlib.sha256(image.tobytes())
            digests.append(f"{image.mode}:{image.size[0]}x{image.size[1]}:{digest.hexdigest()}")
    return tuple(digests)


def verify(item: Item, found: dict[str, str], mode: str) -> None:
    """Raise SkipItem unless the temporary file holds exactly our texts (and, embedded, the same pixels)."""
    for tag, expected in item.tags().items():
        got = found.get(tag)
        if got != expected:
            raise SkipItem(f"{item.image}: {tag} reads back as {got!r}, not {expected!r}; nothing changed")
    if mode == "embed":
        assert item.temp is not None
        try:
            same = pixel_digest(item.image) == pixel_digest(item.temp)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise SkipItem(f"{item.image}: cannot decode it to check its pixels ({exc}); nothing was changed"
                           ) from None
        if not same:
            raise SkipItem(f"{item.image}: exiftool changed its pixels; refused, nothing was changed")


def commit(item: Item, mode: str, in_place: bool) -> None:
    """Rename the verified temporary file over the target (the original's mode is kept)."""
    assert item.temp is not None and item.target is not None
    if in_place:
        stat = item.image.stat()
        if (stat.st_size, stat.st_mtime_ns) != item.seen:
            raise SkipItem(f"{item.image}: changed while we wrote its metadata; left alone, export it again")
        os.chmod(item.temp, stat.st_mode & 0o7777)
    os.replace(item.temp, item.target)
    item.temp = None


def cleanup(item: Item) -> None:
    if item.temp is not None:
        item.temp.unlink(missing_ok=True)
        item.temp = None


def run_batch(exe: str, items: list[Item], mode: str, in_place: bool, errors: list[dict[str, str]]) -> int:
    """Write, verify and commit a batch of staged items; returns how many were written."""
    staged = {item.temp: item for item in items if item.temp is not None}
    try:
        failed = exiftool.write(exe, {temp: item.tags() for temp, item in staged.items()})
        tags = sorted({tag for item in staged.values() for tag in item.tags()})
        found = exiftool.read(exe, list(staged), tags)
        written = 0
        for temp, item in staged.items():
            try:
                if temp in failed and temp not in found:
                    raise SkipItem(f"{item.image}: exiftool: {failed[temp]}")
                verify(item, found.get(temp, {}), mode)
                commit(item, mode, in_place)
                written += 1
            except (SkipItem, OSError) as exc:
                errors.append({"path": str(item.image), "reason": _reason(exc, failed.get(temp))})
        return written
    finally:
        for item in staged.values():
            cleanup(item)


def _reason(exc: Exception, exiftool_said: str | None) -> str:
    reason = str(exc)
    if exiftool_said and exiftool_said not in reason:
        return f"{reason} (exiftool: {exiftool_said})"
    return reason
