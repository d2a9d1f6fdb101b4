"""catalogcap-xmp: reviewed alt text and descriptions into the IPTC 2021 accessibility fields of XMP.

    catalogcap export xmp                                  # photo.xmp sidecars beside the images
    catalogcap export xmp --out /srv/meta                  # sidecars under /srv/meta, same tree
    catalogcap export xmp -o mode=embed                    # into the images themselves
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from catalogcap.errors import PathOutsideRoot
from catalogcap.plugins import hookimpl
from catalogcap.plugins.events import CaptionEvent
from catalogcap_xmp import exiftool, writer

__version__ = "0.1.0"
LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")


class XmpSettings(BaseModel):
    """`[plugin_config.xmp]`."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["sidecar", "embed"] = Field(
        "sidecar", description="sidecar: write an .xmp file and never touch the image; embed: write into the"
        " image (a verified temporary copy replaces it; pixels untouched).")
    sidecar_name: Literal["basename", "fullname"] = Field(
        "basename", description="Sidecar naming: basename gives photo.xmp (Adobe, most DAMs), fullname"
        " photo.jpg.xmp.")
    language: str | None = Field(
        None, description="A BCP 47 tag (e.g. en-US) under which the text is written too, besides x-default.")
    root: Path | None = Field(
        None, description="With --out: image paths are taken relative to this folder (default: their common"
        " folder).")
    exiftool: str = Field("exiftool", description="The exiftool program (a name on PATH or a full path).")
    batch_size: int = Field(200, ge=1, le=5000, description="Images per exiftool run.")
    overwrite_human: bool = Field(
        False, description="Replace alt text or a description a person already wrote in the image or its"
        " sidecar (default: keep it and count it as kept_human); `catalogcap export --overwrite-human` sets it"
        " for one run.")

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        if value is not None and (value == "x-default" or not LANGUAGE_TAG.match(value)):
            raise ValueError("use a BCP 47 language tag such as en or en-US (x-default is always written)")
        return value


@hookimpl
def register_settings(register):
    register("xmp", XmpSettings)


@hookimpl
def register_exporters(register):
    register("xmp", export_xmp, "IPTC alt text and description into XMP sidecars, or embedded (exiftool).")


def export_xmp(events: Iterable[CaptionEvent], dest: str | Path | None, options: dict[str, Any]
               ) -> dict[str, Any]:
    """Write each image's reviewed captions into XMP; report written, skipped and failed images."""
    config = XmpSettings.model_validate(options)
    exe = exiftool.find(config.exiftool)
    languages = ["x-default", *([config.language] if config.language else [])]
    items, errors = _items(events, languages)
    images = len(items)
    out = Path(dest).absolute() if dest not in (None, "-") else None
    root = _root(config.root, items, out)
    in_place = config.mode == "embed" and out is None
    ready: list[writer.Item] = []
    targets: dict[Path, Path] = {}
    for item in items:
        try:
            item.target = writer.plan(item, config.mode, config.sidecar_name, out, root)
            if item.target in targets:
                raise writer.SkipItem(f"{item.image}: its sidecar {item.target} is also"
                                      f" {targets[item.target]}'s; use -o sidecar_name=fullname")
            targets[item.target] = item.image
            ready.append(item)
        except (writer.SkipItem, PathOutsideRoot, OSError) as exc:
            errors.append({"path": str(item.image), "reason": str(exc)})
    kept: list[dict[str, str]] = []
    if not config.overwrite_human:
        ready = _keep_human(exe, ready, kept, config.batch_size)
    written = 0
    for start in range(0, len(ready), config.batch_size):
        batch = ready[start:start + config.batch_size]
        for item in batch:
            try:
                writer.stage(item, config.mode)
            except (writer.SkipItem, OSError) as exc:
                errors.append({"path": str(item.image), "reason": str(exc)})
                writer.cleanup(item)
        written += writer.run_batch(exe, batch, config.mode, in_place, errors)
    return {"mode": config.mode, "images": images, "written": written, "kept_human": len(kept),
            "dest": str(out) if out else ("in place" if in_place else "beside the images"),
            "human_kept": kept, "errors": errors}


def _keep_human(exe: str, items: list[writer.Item], kept: list[dict[str, str]], batch_size: int
                ) -> list[writer.Item]:
    """Leave out of each item the kinds a person already wrote text for, in the image or in the
    sidecar (or copy) it goes to; the items left with something to write."""
    sources: list[Path] = []
    for item in items:
        sources.append(item.image)
        if item.target is not None and item.target != item.image and item.target.is_file() \
                and not item.target.is_symlink():
            sources.append(item.target)
    sources = sorted(set(sources))
    tags = sorted({tag for tags in writer.FIELDS.values() for tag in tags})
    found: dict[Path, dict[str, str]] = {}
    for start in range(0, len(sources), batch_size):
        found.update(exiftool.read(exe, sources[start:start + batch_size], tags))
    remaining = []
    for item in items:
        records = [found.get(item.image, {})] + ([found.get(item.target, {})] if item.target else [])
        for kind in writer.kinds_of(item):
            theirs = writer.human_text(item, kind, records)
            if theirs is not None:
                writer.drop_kind(item, kind)
                kept.append({"path": str(item.image), "kind": kind, "text": theirs})
        if item.texts:
            remaining.append(item)
    return remaining


def _items(events: Iterable[CaptionEvent], languages: list[str]
           ) -> tuple[list[writer.Item], list[dict[str, str]]]:
    """One item per live path of each image: every copy of the same bytes gets the captions."""
    by_path: dict[str, writer.Item] = {}
    missing: dict[str, dict[str, str]] = {}
    for event in events:
        if event.path is None:
            missing[event.fingerprint] = {
                "path": f"sha256:{event.fingerprint}",
                "reason": "the image is missing from every known path; run `catalogcap scan`"}
            continue
        for path in event.paths:
            item = by_path.setdefault(path, writer.Item(Path(path), event.fingerprint))
            writer.set_text(item, event.kind, event.text, languages, known=(event.model_text,))
    return list(by_path.values()), list(missing.values())


def _root(configured: Path | None, items: list[writer.Item], out: Path | None) -> Path | None:
    if out is None:
        return None
    if configured is not None:
        return configured.expanduser().resolve()
    parents = [str(item.image.resolve().parent) for item in items]
    return Path(os.path.commonpath(parents)) if parents else None
