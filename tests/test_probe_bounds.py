"""Probing is bounded and happens outside the store's write lock, once per API upload."""

from __future__ import annotations

import io
import sqlite3
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from catalogcap import images
from catalogcap.api.app import create_app
from catalogcap.api.tokens import create_token
from catalogcap.intake import register_file
from tests.conftest import make_image


def many_page_tiff(pages: int) -> bytes:
    """A TIFF of `pages` 1x1 grey pages sharing one strip: 114 bytes a page (100,000 pages: 11.4 MB)."""
    ifd_size = 2 + 9 * 12 + 4
    strip = 8 + pages * ifd_size
    tags = struct.pack("<H", 9) + b"".join(struct.pack("<HHII", *tag) for tag in (
        (256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, strip),
        (277, 3, 1, 1), (278, 3, 1, 1), (279, 4, 1, 1)))
    ifds = [tags + struct.pack("<I", 8 + (n + 1) * ifd_size if n < pages - 1 else 0) for n in range(pages)]
    return b"II*\x00" + struct.pack("<I", 8) + b"".join(ifds) + b"\x80"


def test_many_page_tiff_probe_counts_a_bounded_number_of_pages(tmp_path: Path) -> None:
    path = tmp_path / "pages.tif"
    path.write_bytes(many_page_tiff(100_000))
    info = images.probe(path)
    assert (info.format, info.width, info.height) == ("TIFF", 1, 1)
    assert info.frames == images.FRAME_CAP  # counting stopped; Pillow's n_frames would walk all 100,000
    assert images.load(path).size == (1, 1)
    few = tmp_path / "few.tif"
    few.write_bytes(many_page_tiff(3))
    assert images.probe(few).frames == 3


def _writer_can_lock(db: Path) -> bool:
    """Whether another connection can take the write lock right now (no waiting)."""
    connection = sqlite3.connect(db, timeout=0.05)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.rollback()
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        connection.close()


def test_register_probes_outside_the_write_transaction(engine, settings, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    db = settings.home / "catalogcap.db"
    seen: list[bool] = []
    real_probe = images.probe

    def probe(path, **limits):
        outcome: list[bool] = []
        checker = threading.Thread(target=lambda: outcome.append(_writer_can_lock(db)))
        checker.start()
        checker.join()
        seen.extend(outcome)
        return real_probe(path, **limits)

    monkeypatch.setattr(images, "probe", probe)
    tiff = tmp_path / "pages.tif"
    tiff.write_bytes(many_page_tiff(2000))
    item = register_file(engine, tiff, settings)
    assert item.outcome == "new"
    assert seen == [True], "the probe ran while the store's write lock was held"


@pytest.fixture
def client(settings, engine, tmp_path: Path) -> Iterator[TestClient]:
    settings.api.roots = [tmp_path / "roots"]
    (tmp_path / "roots").mkdir()
    with TestClient(create_app(settings, engine, run_worker=False), raise_server_exceptions=False) as client:
        yield client


def test_one_probe_per_upload_and_per_registered_path(client: TestClient, engine, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_probe = images.probe

    def probe(path, **limits):
        calls.append(str(path))
        return real_probe(path, **limits)

    monkeypatch.setattr(images, "probe", probe)
    admin = {"Authorization": f"Bearer {create_token(engine, 'admin', 'admin').secret}"}
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(buffer, "JPEG")
    response = client.post("/v1/images", headers=admin, files={"file": ("a.jpg", buffer.getvalue(), "image/jpeg")})
    assert response.status_code == 202, response.text
    assert len(calls) == 1
    on_disk = make_image(tmp_path / "roots" / "b.png", "blue")
    response = client.post("/v1/images", headers=admin, data={"path": str(on_disk)})
    assert response.status_code == 202, response.text
    assert len(calls) == 2 and calls[1] == str(on_disk)
