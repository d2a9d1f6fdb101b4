"""Product data read at intake: sidecar NAME.json files (scan and the watch daemon) and human alt
text embedded in the image's XMP."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from sqlmodel import select

from catalogcap.intake import register_file, scan
from catalogcap.products import context_for
from catalogcap.products.embedded import alt_text
from catalogcap.settings import load_settings
from catalogcap.store.database import read_session
from catalogcap.store.models import Caption, Product
from catalogcap.watch.daemon import Daemon
from tests.conftest import make_image
from tests.factories import poll


def sidecars(engine) -> dict[str, Product]:
    with read_session(engine) as session:
        return {Path(p.origin).name: p for p in session.exec(select(Product).where(Product.source == "sidecar"))}


def alt_caption(engine, asset_id: int) -> Caption | None:
    with read_session(engine) as session:
        return session.exec(select(Caption).where(Caption.asset_id == asset_id, Caption.kind == "alt_text")).first()


def test_scan_reads_sidecars_and_follows_their_changes(home, engine, settings, tmp_path, caplog) -> None:
    folder = tmp_path / "photos"
    lamp = make_image(folder / "lamp.jpg", "red")
    make_image(folder / "mug.png", "blue")
    make_image(folder / "twin.jpg", "green")
    make_image(folder / "twin.png", "yellow")
    (folder / "lamp.json").write_text(json.dumps({"Title": "Arc lamp", "Colour": "red", "Fit / Cut": "tall",
                                                  "price": 12.5, "tags": ["x"], "alt_text": "Red arc lamp"}))
    (folder / "mug.png.json").write_text("{not json")
    (folder / "twin.json").write_text('{"title": "Which one?"}')
    make_image(folder / "huge.jpg", "black")
    (folder / "huge.json").write_text('{"notes": "' + "x" * 2**20 + '"}')
    with caplog.at_level(logging.WARNING, logger="catalogcap.products"):
        report = scan(engine, [folder], settings)
    assert report.outcomes["new"] == 5
    rows = sidecars(engine)
    assert set(rows) == {"lamp.json"}
    row = rows["lamp.json"]
    assert (row.key, row.title, row.color, row.fields) == (
        f"sidecar:{folder / 'lamp.json'}", "Arc lamp", "red", {"fit_cut": "tall", "price": "12.5"})
    with read_session(engine) as session:
        assert context_for(session, row.asset_id).fields["title"] == "Arc lamp"
    assert alt_caption(engine, row.asset_id).source == "sidecar"
    assert "mug.png.json: not valid JSON" in caplog.text
    assert "several images are named twin.*" in caplog.text
    assert "huge.json: over 1,048,576 bytes" in caplog.text

    (folder / "lamp.json").unlink()
    (folder / "lamp.jpg.json").write_text('{"title": "Floor lamp"}')
    scan(engine, [folder], settings)
    rows = sidecars(engine)
    assert set(rows) == {"lamp.jpg.json"} and rows["lamp.jpg.json"].title == "Floor lamp"
    assert register_file(engine, lamp, settings).outcome == "unchanged"


def test_watch_daemon_follows_sidecar_changes(home, tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("CATALOGCAP_WATCH__QUIET_SECONDS", "0.2")
    settings = load_settings()
    from catalogcap.store.database import create_store_engine

    engine = create_store_engine(settings.db_url)
    folder = tmp_path / "inbox"
    make_image(folder / "lamp.jpg", "red")
    daemon = Daemon(engine, settings, [folder], stop_timeout=10, caption=False, schedule_training=False)
    ready = threading.Event()
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False, "ready": ready}, daemon=True)
    thread.start()
    try:
        assert ready.wait(60)
        sidecar = folder / "lamp.json"
        sidecar.write_text('{"title": "Arc lamp"}')
        poll(lambda: sidecars(engine).get("lamp.json") is not None, 20, "the sidecar's row")
        with caplog.at_level(logging.WARNING, logger="catalogcap.products"):
            sidecar.write_text("[1, 2]")
            poll(lambda: "not a JSON object" in caplog.text, 20, "a warning about the bad sidecar")
        assert sidecars(engine)["lamp.json"].title == "Arc lamp"  # nothing lost
        sidecar.write_text('{"title": "Floor lamp"}')
        poll(lambda: sidecars(engine)["lamp.json"].title == "Floor lamp", 20, "the changed title")
        make_image(folder / "mug.png", "blue")
        (folder / "mug.png.json").write_text('{"brand": "Acme"}')
        poll(lambda: "mug.png.json" in sidecars(engine), 20, "the sidecar of an image arriving with it")
        sidecar.unlink()
        poll(lambda: "lamp.json" not in sidecars(engine), 20, "the row of the deleted sidecar to go")
        assert thread.is_alive()
    finally:
        daemon.stop()
        thread.join(30)
        engine.dispose()


def _exiftool(*args: str) -> None:
    subprocess.run(["exiftool", "-q", "-overwrite_original", *args], check=True, capture_output=True, timeout=60)


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")
def test_embedded_xmp_alt_text_is_human_text_the_worker_keeps(home, engine, settings, tmp_path) -> None:
    from catalogcap.worker import Worker

    folder = tmp_path / "photos"
    tagged = make_image(folder / "tagged.jpg", "red")
    _exiftool("-XMP-iptcCore:AltTextAccessibility=Red shirt folded on a table", str(tagged))
    described = make_image(folder / "described.jpg", "blue")
    _exiftool("-XMP-dc:Description=Blue mug", str(described))
    long = make_image(folder / "long.jpg", "green")
    _exiftool("-XMP-dc:Description=" + "word " * 60, str(long))
    report = scan(engine, [folder], settings)
    with read_session(engine) as session:
        from catalogcap.store.models import AssetPath

        ids = {Path(p.path).name: p.asset_id for p in session.exec(select(AssetPath)).all()}
    assert report.outcomes["new"] == 3
    worker = Worker(engine, settings)
    try:
        worker.drain()
    finally:
        worker.close()
    tagged_alt = alt_caption(engine, ids["tagged.jpg"])
    assert (tagged_alt.text, tagged_alt.state, tagged_alt.source, tagged_alt.model) == (
        "Red shirt folded on a table", "accepted", "xmp", "")
    assert alt_caption(engine, ids["described.jpg"]).text == "Blue mug"
    long_alt = alt_caption(engine, ids["long.jpg"])  # a description too long for alt text is not alt text
    assert long_alt.source is None and long_alt.state == "pending"


def test_xmp_with_a_doctype_is_not_parsed(tmp_path) -> None:
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(b"\xff\xd8" + b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x:xmpmeta xmlns:x="adobe:ns:meta/">'
                     b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description'
                     b' xmlns:Iptc4xmpCore="http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/"'
                     b' Iptc4xmpCore:AltTextAccessibility="&a;"/></rdf:RDF></x:xmpmeta>')
    assert alt_text(bomb, 125) is None
    bomb.write_bytes(bomb.read_bytes().replace(b'<!DOCTYPE x [<!ENTITY a "aaaa">]>', b"").replace(b"&a;", b"ok"))
    assert alt_text(bomb, 125) == "ok"
