"""The whole Pillow corpus through intake: every file is registered as an image or recorded
as rejected with a readable reason; nothing raises, nothing is left half-written."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import select

from catalogcap import images
from catalogcap.intake import display, scan
from catalogcap.store.database import read_session
from catalogcap.store.models import Asset, AssetPath, Job
from tests.conftest import CORPUS

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus/pillow-images is not present")


def test_every_corpus_file_is_an_asset_or_a_reasoned_rejection(settings, engine) -> None:
    settings.watch.include = ["*"]  # take every file, whatever its extension
    settings.watch.ignore = []
    report = scan(engine, [CORPUS], settings)
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert report.found == len(files) >= 738
    assert report.outcomes["vanished"] == 0
    with read_session(engine) as session:
        paths = {row.path: row for row in session.exec(select(AssetPath)).all()}
        assets = {a.id: a for a in session.exec(select(Asset)).all()}
        jobs = {j.asset_id: j for j in session.exec(select(Job)).all()}
    assert set(paths) == {str(p.absolute()) for p in files}
    outcomes: Counter[str] = Counter()
    for path in files:
        asset = assets[paths[str(path.absolute())].asset_id]
        if asset.state == "rejected":
            assert asset.error and asset.error.split(":")[0] in images.REASONS.values(), (path, asset.error)
            assert asset.id not in jobs
            outcomes[asset.error.split(":")[0]] += 1
        else:
            assert asset.state == "queued" and jobs[asset.id].state == "pending"
            assert asset.width and asset.height and asset.format in images.SUPPORTED_FORMATS
            outcomes["queued"] += 1
    rejected = [r for r in report.rejections]
    assert len(rejected) == sum(v for k, v in outcomes.items() if k != "queued")
    # the report names exactly the rejected files, each with the reason the store recorded
    errors = {display(p): assets[row.asset_id].error for p, row in paths.items()
              if assets[row.asset_id].state == "rejected"}
    assert {r["path"]: r["reason"] for r in rejected} == errors
    # known files land where they should
    by_name = {Path(p).name: assets[row.asset_id] for p, row in paths.items()}
    assert by_name["decompression_bomb.gif"].error.startswith("too many pixels")
    assert by_name["hopper.ico"].error.startswith("unsupported image format")
    assert by_name["pil_sample_cmyk.jpg"].state == "queued"
    assert outcomes["queued"] >= 680
    print("\ncorpus intake:", dict(outcomes))
    # a second scan reads nothing again
    again = scan(engine, [CORPUS], settings)
    assert again.outcomes["unchanged"] == len(files) and not again.rejections
