"""A simulated reviewer for the demo and tests: corrects captions toward the house style
using the catalog's ground truth, exactly through the store's review API."""

from __future__ import annotations

import random
from pathlib import Path

from sqlalchemy.engine import Engine

from catalogcap.demo.catalog import Product
from catalogcap.store.captions import decide, list_captions
from catalogcap.store.database import read_session, write_session


def review_toward_house(engine: Engine, truth: dict[str, Product], *, share: float = 1.0, seed: int = 0,
                        reviewer: str = "demo-reviewer", shuffle_texts: bool = False) -> dict[str, int]:
    """Review a `share` of pending captions: accept those already in house style, edit the
    rest to it. `shuffle_texts` gives every image another image's text (a bad night)."""
    rng = random.Random(seed)
    with read_session(engine) as session:
        rows = list_captions(session, state="pending")
    by_asset: dict[int, list] = {}
    for row in rows:
        if row.path and Path(row.path).name in truth:
            by_asset.setdefault(row.asset_id, []).append(row)
    assets = sorted(by_asset)
    rng.shuffle(assets)
    chosen = assets[: round(len(assets) * share)]
    donors = list(chosen)
    if shuffle_texts:
        rng.shuffle(donors)
    counts = {"accepted": 0, "edited": 0}
    for asset_id, donor_id in zip(chosen, donors):
        donor = truth[Path(by_asset[donor_id][0].path).name]
        for row in by_asset[asset_id]:
            wanted = _sentence(donor.house(row.kind), row.kind)
            with write_session(engine) as session:
                if row.text == wanted:
                    decide(session, row.id, "accept", reviewer=reviewer, expected_version=row.version)
                    counts["accepted"] += 1
                else:
                    decide(session, row.id, "edit", reviewer=reviewer, text=wanted, expected_version=row.version)
                    counts["edited"] += 1
    return counts


def _sentence(text: str, kind: str) -> str:
    text = text[:1].upper() + text[1:]
    return text + "." if kind == "description" and not text.endswith(".") else text
