"""XMP embed staging (no exiftool needed): the staged copy must be the captioned image."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from catalogcap_xmp import writer

from tests.conftest import make_image


def _planned(tmp_path: Path) -> writer.Item:
    image = make_image(tmp_path / "shirt.jpg", "red")
    item = writer.Item(image, writer.sha256_of(image))
    writer.set_text(item, "alt_text", "a red shirt", ["x-default"])
    item.target = writer.plan(item, "embed", "adobe", None, None)
    return item


def test_a_file_replaced_after_planning_is_skipped_and_left_alone(tmp_path: Path) -> None:
    item = _planned(tmp_path)
    other = make_image(tmp_path / "incoming" / "other.jpg", "blue")
    os.replace(other, item.image)  # a DAM swaps the file between plan and stage
    replaced = item.image.read_bytes()
    with pytest.raises(writer.SkipItem, match="sha256 of the copy differs"):
        writer.stage(item, "embed")
    writer.cleanup(item)
    assert item.image.read_bytes() == replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["incoming", "shirt.jpg"], "no temporary copy is left"


def test_an_unchanged_file_is_staged_as_an_exact_copy(tmp_path: Path) -> None:
    item = _planned(tmp_path)
    writer.stage(item, "embed")
    try:
        assert item.temp is not None and writer.sha256_of(item.temp) == item.fingerprint
        stat = item.image.stat()
        assert item.seen == (stat.st_size, stat.st_mtime_ns)
    finally:
        writer.cleanup(item)
