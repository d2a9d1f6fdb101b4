"""An image is its picture, not its metadata: a metadata-only rewrite keeps the asset and its reviews."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image
from sqlmodel import select

from catalogcap.fingerprint import content_id, fingerprint_file
from catalogcap.intake import register_file, scan
from catalogcap.store.captions import save_model_captions
from catalogcap.store.database import create_store_engine, read_session, upgrade, write_session
from catalogcap.store.models import Asset, AssetPath, Caption, Job

XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:title="x"/></rdf:RDF></x:xmpmeta>')


def _photo(fmt: str, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def with_xmp(data: bytes) -> bytes:
    """`data` with an XMP packet added the way exiftool places one (APP1, iTXt, VP8X + XMP chunk)."""
    if data.startswith(b"\xff\xd8"):
        body = b"http://ns.adobe.com/xap/1.0/\0" + XMP
        return data[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + data[2:]
    if data.startswith(b"\x89PNG"):
        end = data.rindex(b"IEND") - 4
        return data[:end] + _png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + XMP) + data[end:]
    if data.startswith(b"RIFF"):
        width, height = Image.open(io.BytesIO(data)).size
        vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([0x04, 0, 0, 0]) + (width - 1).to_bytes(3, "little") \
            + (height - 1).to_bytes(3, "little")
        xmp = b"XMP " + struct.pack("<I", len(XMP)) + XMP + (b"\0" if len(XMP) % 2 else b"")
        body = b"WEBP" + vp8x + data[12:] + xmp
        return b"RIFF" + struct.pack("<I", len(body)) + body
    raise AssertionError("unsupported")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_metadata_does_not_change_the_content_id_but_pixels_do(tmp_path: Path, fmt: str) -> None:
    plain, tagged, other = tmp_path / "plain", tmp_path / "tagged", tmp_path / "other"
    plain.write_bytes(_photo(fmt))
    tagged.write_bytes(with_xmp(plain.read_bytes()))
    other.write_bytes(_photo(fmt, seed=1))
    assert Image.open(tagged).size == (64, 48)  # still a valid image
    assert fingerprint_file(plain) != fingerprint_file(tagged)
    assert content_id(plain) == content_id(tagged) != content_id(other)
    assert content_id(plain) is not None


def test_tiff_is_identified_by_its_pixels(tmp_path: Path) -> None:
    picture = Image.open(io.BytesIO(_photo("PNG")))
    picture.save(tmp_path / "a.tif")
    picture.save(tmp_path / "b.tif", tiffinfo={270: "a product photo", 305: "some DAM 1.0"})
    assert fingerprint_file(tmp_path / "a.tif") != fingerprint_file(tmp_path / "b.tif")
    assert content_id(tmp_path / "a.tif") == content_id(tmp_path / "b.tif")
    (tmp_path / "broken.tif").write_bytes(b"II*\0" + b"\0" * 20)
    assert content_id(tmp_path / "broken.tif") is None


def _review(engine, asset_id: int) -> None:
    with write_session(engine) as session:
        save_model_captions(session, asset_id, {"alt_text": "red noise", "description": "a product photo of noise"},
                            model="m", adapter_id=None, generation={"alt_text": {}, "description": {}})
        session.execute(sa.update(Caption).where(Caption.asset_id == asset_id).values(state="accepted"))
        session.execute(sa.update(Job).where(Job.asset_id == asset_id).values(state="done"))
        session.execute(sa.update(Asset).where(Asset.id == asset_id).values(state="captioned"))


def _rewrite_metadata(path: Path) -> None:
    stat = path.stat()
    path.write_bytes(with_xmp(path.read_bytes()))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_a_metadata_rewrite_keeps_the_asset_its_reviews_and_queues_nothing(engine, settings,
                                                                            tmp_path: Path) -> None:
    folder = tmp_path / "catalog"
    folder.mkdir()
    photo = folder / "shirt.jpg"
    photo.write_bytes(_photo("JPEG"))
    first = register_file(engine, photo, settings)
    _review(engine, first.asset_id)
    _rewrite_metadata(photo)  # what `export xmp -o mode=embed` or exiftool does
    report = scan(engine, [folder], settings)
    assert report.outcomes["metadata"] == 1 and report.outcomes["new"] == report.outcomes["changed"] == 0
    with read_session(engine) as session:
        assets = session.exec(select(Asset)).all()
        assert [a.id for a in assets] == [first.asset_id]
        assert assets[0].fingerprint == fingerprint_file(photo) and assets[0].missing_since is None
        assert assets[0].size == photo.stat().st_size and assets[0].state == "captioned"
        assert [c.state for c in session.exec(select(Caption)).all()] == ["accepted", "accepted"]
        assert [j.state for j in session.exec(select(Job)).all()] == ["done"], "nothing is captioned again"
    assert scan(engine, [folder], settings).outcomes["unchanged"] == 1


def test_a_tagged_copy_elsewhere_is_a_duplicate_and_the_original_keeps_its_fingerprint(engine, settings,
                                                                                      tmp_path: Path) -> None:
    original = tmp_path / "a.png"
    original.write_bytes(_photo("PNG"))
    first = register_file(engine, original, settings)
    copy = tmp_path / "copy.png"
    copy.write_bytes(with_xmp(original.read_bytes()))
    again = register_file(engine, copy, settings)
    assert (again.outcome, again.asset_id) == ("duplicate", first.asset_id)
    with read_session(engine) as session:
        assert session.get(Asset, first.asset_id).fingerprint == fingerprint_file(original)


def test_a_store_from_before_content_ids_learns_them_on_the_next_scan(settings, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    folder = tmp_path / "catalog"
    folder.mkdir()
    photo = folder / "mug.webp"
    photo.write_bytes(_photo("WEBP"))
    stat = photo.stat()
    old = create_store_engine(url, migrate=False)
    upgrade(old, "0003")
    with old.begin() as conn:  # rows as release 0003 wrote them: no content_id column yet
        conn.exec_driver_sql(
            "INSERT INTO assets (id, fingerprint, size, state, created_at, updated_at) VALUES"
            " (1, ?, ?, 'captioned', '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
            (fingerprint_file(photo), stat.st_size))
        conn.exec_driver_sql(
            "INSERT INTO asset_paths (asset_id, path, size, mtime_ns, missing, first_seen, last_seen) VALUES"
            " (1, ?, ?, ?, 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
            (str(photo), stat.st_size, stat.st_mtime_ns))
    old.dispose()
    engine = create_store_engine(url)  # upgraded to 0004 on open
    try:
        with read_session(engine) as session:
            assert session.get(Asset, 1).content_id is None
        assert scan(engine, [folder], settings).outcomes["unchanged"] == 1
        with read_session(engine) as session:
            assert session.get(Asset, 1).content_id == content_id(photo)
        _rewrite_metadata(photo)
        report = scan(engine, [folder], settings)
        assert report.outcomes["metadata"] == 1
        with read_session(engine) as session:
            assert [a.id for a in session.exec(select(Asset)).all()] == [1]
            assert [p.asset_id for p in session.exec(select(AssetPath)).all()] == [1]
    finally:
        engine.dispose()
