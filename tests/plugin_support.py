"""Shared by the plugin tests: put images and reviewed captions into a real store without the model."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image

from catalogcap.store.captions import decide, save_model_captions
from catalogcap.store.database import write_session
from catalogcap.store.models import KINDS, Asset, AssetPath


def add_image(engine, path: Path, texts: dict[str, str] | None = None) -> dict[str, int]:
    """Register `path` as an asset with pending model captions; returns caption ids by kind."""
    data = path.read_bytes()
    with Image.open(path) as image:
        width, height, fmt = image.width, image.height, image.format
    texts = texts or {"alt_text": f"model alt of {path.stem}", "description": f"model description of {path.stem}"}
    stat = path.stat()
    with write_session(engine) as session:
        asset = Asset(fingerprint=hashlib.sha256(data).hexdigest(), size=len(data), width=width, height=height,
                      format=fmt, state="captioned")
        session.add(asset)
        session.flush()
        session.add(AssetPath(asset_id=asset.id, path=str(path.absolute()), size=stat.st_size,
                              mtime_ns=stat.st_mtime_ns))
        captions = save_model_captions(session, asset.id, texts, model="tiny-blip", adapter_id=None,
                                       generation={kind: {} for kind in KINDS})
        return {caption.kind: caption.id for caption in captions}


def review(engine, caption_id: int, decision: str = "accept", text: str | None = None) -> None:
    """Decide as a store with alt_text_limit at its maximum would (exporters' own limits are under test)."""
    with write_session(engine) as session:
        decide(session, caption_id, decision, reviewer="tester", text=text, alt_text_limit=1000)


def add_reviewed(engine, path: Path, alt: str, description: str | None = None) -> dict[str, int]:
    """An image whose alt text (and description, when given) a reviewer edited to these texts."""
    ids = add_image(engine, path)
    review(engine, ids["alt_text"], "edit", alt)
    if description is not None:
        review(engine, ids["description"], "edit", description)
    return ids
