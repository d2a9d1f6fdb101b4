"""Exporters keep alt text people wrote (unless --overwrite-human) and give every copy of an image
its captions: XMP sidecars for each live path, Shopify rows by any path's name or client name."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from catalogcap.cli import cli
from catalogcap.intake import register_file
from catalogcap.store.captions import decide, save_model_captions
from catalogcap.store.database import write_session
from catalogcap.store.models import KINDS, AssetPath
from tests.conftest import make_image

pytestmark = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool missing")
ALT = "XMP-iptcCore:AltTextAccessibility"
EXT = "XMP-iptcCore:ExtDescrAccessibility"


def read(path: Path, *tags: str) -> dict[str, str]:
    out = subprocess.run(["exiftool", "-json", "-G1", *[f"-{t}" for t in tags], str(path)], check=True,
                         capture_output=True).stdout
    record = json.loads(out)[0]
    record.pop("SourceFile")
    return record


def export(*args: str, code: int = 0) -> dict:
    result = CliRunner().invoke(cli, ["export", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return json.loads(result.stdout) if code == 0 else {"output": result.output}


def reviewed(engine, settings, *paths: Path, alt: str, description: str = "A product.") -> int:
    """Register the files (copies of one image share its asset) with accepted captions."""
    asset_ids = {register_file(engine, path, settings).asset_id for path in paths}
    assert len(asset_ids) == 1
    asset_id = asset_ids.pop()
    with write_session(engine) as session:
        for caption in save_model_captions(session, asset_id, {"alt_text": alt, "description": description},
                                           model="m", adapter_id=None, generation={k: {} for k in KINDS}):
            decide(session, caption.id, "accept", reviewer="ann")
    return asset_id


def test_embedded_human_alt_text_survives_an_xmp_export_unless_overwrite_human(engine, settings,
                                                                               tmp_path: Path) -> None:
    image = make_image(tmp_path / "lamp.jpg", "red")
    reviewed(engine, settings, image, alt="A red lamp")
    # someone writes alt text into the file after catalogcap saw it (alt text already in a new
    # file is imported as the human caption instead: tests/test_products_intake.py)
    subprocess.run(["exiftool", "-q", "-overwrite_original", f"-{ALT}=Brass desk lamp, lit", str(image)],
                   check=True)
    assert register_file(engine, image, settings).outcome == "metadata"  # same picture, same asset
    report = export("xmp", "-o", "mode=embed", "--kind", "alt_text")
    assert report["kept_human"] == 1 and report["written"] == 0 and report["errors"] == []
    assert report["human_kept"] == [{"path": str(image), "kind": "alt_text", "text": "Brass desk lamp, lit"}]
    assert read(image, ALT) == {ALT: "Brass desk lamp, lit"}
    summary = CliRunner().invoke(cli, ["export", "xmp", "-o", "mode=embed", "--kind", "alt_text"])
    assert "kept_human: 1" in summary.output

    # a sidecar export leaves the image's human alt text alone and does not contradict it
    sidecar = export("xmp")
    assert sidecar["kept_human"] == 1 and sidecar["written"] == 1
    assert read(image.with_suffix(".xmp"), ALT, EXT) == {EXT: "A product."}

    replaced = export("xmp", "-o", "mode=embed", "--kind", "alt_text", "--overwrite-human")
    assert replaced["kept_human"] == 0 and replaced["written"] == 1
    assert read(image, ALT) == {ALT: "A red lamp"}
    refused = export("jsonl", "--overwrite-human", code=1)
    assert "does not apply" in refused["output"]


def test_copies_of_one_image_each_get_a_sidecar(engine, settings, tmp_path: Path) -> None:
    first = make_image(tmp_path / "shop" / "mug.jpg", "blue")
    copy = tmp_path / "web" / "mug-large.jpg"
    copy.parent.mkdir()
    copy.write_bytes(first.read_bytes())
    reviewed(engine, settings, first, copy, alt="A blue mug")
    report = export("xmp")
    assert report["written"] == 2 and report["errors"] == []
    for image in (first, copy):
        assert read(image.with_suffix(".xmp"), ALT) == {ALT: "A blue mug"}


def test_shopify_keeps_human_alt_text_and_fills_rows_of_every_name(engine, settings, tmp_path: Path) -> None:
    shoe = make_image(tmp_path / "shoe.jpg", "white")
    (tmp_path / "shoe-side.jpg").write_bytes(shoe.read_bytes())
    asset_id = reviewed(engine, settings, shoe, tmp_path / "shoe-side.jpg", alt="A white sneaker")
    hat = make_image(tmp_path / "hat.jpg", "green")
    reviewed(engine, settings, hat, alt="A green hat")
    upload = make_image(tmp_path / "upload-7f3a.jpg", "yellow")
    upload_id = reviewed(engine, settings, upload, alt="A yellow scarf")
    with write_session(engine) as session:
        session.execute(sa.update(AssetPath).where(AssetPath.asset_id == upload_id).values(source_name="Scarf.JPG"))
    assert asset_id != upload_id
    source = tmp_path / "products.csv"
    cdn = "https://cdn.shopify.com/s/files/1/products"
    source.write_text("Handle,Image Src,Image Position,Image Alt Text\n"
                      f"shoe,{cdn}/shoe.jpg,1,\n"
                      f"shoe,{cdn}/shoe-side.jpg,2,\n"
                      f"hat,{cdn}/hat.jpg,1,Felt hat in forest green\n"
                      f"scarf,{cdn}/scarf.jpg,1,\n", encoding="utf-8")
    out = tmp_path / "filled.csv"
    report = export("shopify", "-o", f"input={source}", "--out", str(out))
    assert report["kept_human"] == 1 and report["rows_filled"] == 3 and report["unmatched_images"] == []
    alts = [row["Image Alt Text"] for row in csv.DictReader(io.StringIO(out.read_text(encoding="utf-8")))]
    assert alts == ["A white sneaker", "A white sneaker", "Felt hat in forest green", "A yellow scarf"]
    report = export("shopify", "-o", f"input={source}", "--out", str(out), "--force", "--overwrite-human")
    assert report["kept_human"] == 0 and report["rows_filled"] == 4
    assert "A green hat" in out.read_text(encoding="utf-8")
