"""The training set: reviewed captions (accepted or edited, never rejected), per kind.

The held-out split is chosen by a keyed hash of the image fingerprint: an image is in the
validation set tonight iff it was last night, and new images join by the same rule, so
each night's validation set is a superset of the last and metrics stay comparable. The
key (salt) is created once per store and kept in the `meta` table.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from catalogcap.settings import Settings
from catalogcap.store.database import read_session, write_session
from catalogcap.store.models import Asset, AssetPath, Caption, Meta

SALT_KEY = "split_salt"


@dataclass(frozen=True)
class Example:
    caption_id: int
    version: int
    asset_id: int
    fingerprint: str
    kind: str
    text: str
    path: str | None


@dataclass
class Dataset:
    train: list[Example] = field(default_factory=list)
    val: list[Example] = field(default_factory=list)
    missing: int = 0
    new_corrections: int = 0
    fingerprint: str = ""

    @property
    def val_images(self) -> int:
        """Distinct held-out images: the evidence a round decides on."""
        return len({e.fingerprint for e in self.val})

    def summary(self) -> dict[str, Any]:
        return {"train_size": len(self.train), "val_size": len(self.val), "val_images": self.val_images,
                "missing": self.missing,
                "new_corrections": self.new_corrections, "dataset": self.fingerprint}

    def to_json(self) -> dict[str, Any]:
        return {**self.summary(), "train": [asdict(e) for e in self.train], "val": [asdict(e) for e in self.val]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Dataset:
        return cls([Example(**e) for e in data["train"]], [Example(**e) for e in data["val"]], data["missing"],
                   data["new_corrections"], data["dataset"])


def split_salt(engine: Engine) -> str:
    with write_session(engine) as session:
        row = session.get(Meta, SALT_KEY)
        if row is None:
            row = Meta(key=SALT_KEY, value=secrets.token_hex(8))
            session.add(row)
        return row.value


def in_validation(fingerprint: str, salt: str, val_percent: float) -> bool:
    digest = hashlib.sha256(f"{salt}:{fingerprint}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100 < val_percent


def collect(engine: Engine, settings: Settings, *, since=None) -> Dataset:
    """Reviewed captions with a present image, split stably; `since` counts new corrections."""
    salt = split_salt(engine)
    kinds = list(settings.training.eval_kinds)
    with read_session(engine) as session:
        rows = session.exec(
            select(Caption, Asset)
            .join(Asset, col(Asset.id) == Caption.asset_id)
            .where(col(Caption.state).in_(("accepted", "edited")), col(Caption.kind).in_(kinds))
            .order_by(Caption.id)
        ).all()
        paths: dict[int, str] = {}
        for row in session.exec(
            select(AssetPath).where(col(AssetPath.missing).is_(False)).order_by(AssetPath.id)
        ).all():
            paths.setdefault(row.asset_id, row.path)
        new = 0
        if since is not None:
            new = session.execute(
                select(sa.func.count()).select_from(Caption).where(
                    col(Caption.state).in_(("accepted", "edited", "rejected")), Caption.reviewed_at > since)
            ).scalar_one()
        else:
            new = len(rows)
    data = Dataset(new_corrections=new)
    digest = hashlib.sha256()
    for caption, asset in rows:
        path = paths.get(asset.id)
        if path is None or not Path(path).is_file():
            data.missing += 1
            continue
        example = Example(caption.id, caption.version, asset.id, asset.fingerprint, caption.kind,
                          caption.text, path)
        digest.update(f"{caption.id}:{caption.version};".encode())
        (data.val if in_validation(asset.fingerprint, salt, settings.training.val_percent) else data.train).append(
            example)
    data.fingerprint = digest.hexdigest()[:16]
    return data
