"""catalogcap-shopify: only `Image Alt Text` changes; every other byte of the export survives."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from catalogcap.cli import cli
from tests.conftest import make_image
from tests.plugin_support import add_image, add_reviewed, review

HEADER = ("Handle,Title,Body (HTML),Vendor,Tags,Published,Option1 Name,Option1 Value,Variant SKU,Variant Price,"
          "Image Src,Image Position,Image Alt Text,Gift Card,SEO Title,Variant Image,Status")
CDN = "https://cdn.shopify.com/s/files/1/0001/2345/products"
# «A1»... mark the alt-text cells; everything else must come back byte for byte.
ROWS = [
    'red-shirt,Red Shirt,"<p>Our ""crew"" shirt, in red.</p>\r\n<ul>\n<li>100% cotton</li>\r\n</ul>",Acme,'
    '"shirts, red",TRUE,Size,S,RS-S,19.90,' + CDN + '/red-shirt.jpg?v=1700000000,1,«A1»,FALSE,,,active',
    'red-shirt,,,,,,,M,RS-M,19.90,,,,,,,',
    'red-shirt,,,,,,,,,,' + CDN + '/Red%20Shirt%20Back_0a1b2c3d-1111-2222-3333-444455556666.JPG,2,«A2»,,,,',
    'blue-mug,Blue Mug,<b>Mug</b>,Acme,  spaced  ,TRUE,Title,Default Title,BM,9.00,' + CDN + '/blue-mug.png,1,'
    'Existing alt,FALSE,"Blue Mug | Acme",' + CDN + '/blue-mug.png,active',
    'green-hat,Green Hat,"Line one\nLine two",Acme,,TRUE,Title,Default Title,GH,12.00,' + CDN
    + '/green-hat.jpg,1,,FALSE,,,draft',
    'yellow-cap,Yellow Cap,,Acme,,TRUE,Title,Default Title,YC,7.00,' + CDN + '/yellow-cap.jpg?v=2,1,«A3»,FALSE,,,'
    'active',
    'gift,Gift Card,"Ends without a newline, and an image-less row",Acme,,TRUE,Title,Default Title,G,25.00,,,,'
    'TRUE,,,active',
]
LONG = ("Yellow cap with a curved brim and an adjustable strap, photographed from the front on a white background"
        " in soft light, showing stitching details. ") * 5


def run(*args: str, code: int = 0) -> dict:
    result = CliRunner().invoke(cli, ["export", "shopify", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return json.loads(result.stdout) if code == 0 else {"output": result.output}


def build(alts: dict[str, str], *, bom: bool = True, newline: str = "\r\n") -> bytes:
    text = (HEADER + newline + newline.join(ROWS)).replace("«A1»", alts["A1"]).replace("«A2»", alts["A2"])
    return (("\ufeff" if bom else "") + text.replace("«A3»", alts["A3"])).encode("utf-8")


@pytest.fixture
def shop(engine, tmp_path: Path) -> Path:
    """Local images with reviewed alt text: four appear in the export, one does not."""
    folder = tmp_path / "images"
    add_reviewed(engine, make_image(folder / "red-shirt.jpg"), 'Red "crew" shirt, cotton')
    add_reviewed(engine, make_image(folder / "red shirt back.jpg", "maroon"), "Back of the red shirt")
    add_reviewed(engine, make_image(folder / "blue-mug.png", "blue"), "Blue ceramic mug")
    add_reviewed(engine, make_image(folder / "yellow-cap.jpg", "yellow"), LONG)
    add_reviewed(engine, make_image(folder / "purple-sock.jpg", "purple"), "Purple sock")
    add_image(engine, make_image(folder / "green-hat.jpg", "green"))  # pending: never exported
    return folder


def test_only_the_alt_text_cells_change_byte_for_byte(home: Path, shop: Path, tmp_path: Path) -> None:
    source = tmp_path / "products_export.csv"
    source.write_bytes(build({"A1": "", "A2": '""', "A3": ""}))
    out = tmp_path / "out" / "products_alt.csv"
    report = run("-o", f"input={source}", "--out", str(out))
    filled = out.read_bytes()
    after = list(csv.reader(io.StringIO(filled.decode("utf-8-sig"), newline="")))
    yellow_alt = next(row for row in after if row[0] == "yellow-cap")[12]
    assert len(yellow_alt) <= 512 and yellow_alt.endswith("…") and LONG.startswith(yellow_alt[:-1])
    assert filled == build({"A1": '"Red ""crew"" shirt, cotton"', "A2": '"Back of the red shirt"',
                            "A3": f'"{yellow_alt}"'})  # it has commas: quoted
    assert report["rows_filled"] == 3 and report["image_rows"] == 5
    assert [row["line"] for row in report["kept_existing"]] == [8]  # the first record spans lines 2-5
    assert [row["image_src"] for row in report["unmatched_rows"]] == [CDN + "/green-hat.jpg"]
    assert [row["line"] for row in report["unmatched_rows"]] == [9]
    assert report["unmatched_images"] == [str(shop / "purple-sock.jpg")]
    assert [row["line"] for row in report["truncated"]] == [11]
    before = list(csv.reader(io.StringIO(source.read_bytes().decode("utf-8-sig"), newline="")))
    alt = before[0].index("Image Alt Text")
    assert [r[:alt] + r[alt + 1:] for r in before] == [r[:alt] + r[alt + 1:] for r in after]


def test_lf_files_without_a_bom_stay_that_way_and_overwrite_replaces(home: Path, shop: Path,
                                                                       tmp_path: Path) -> None:
    source = tmp_path / "export.csv"
    source.write_bytes(build({"A1": "", "A2": "", "A3": "old"}, bom=False, newline="\n"))
    out = tmp_path / "filled.csv"
    report = run("-o", f"input={source}", "-o", "overwrite=true", "-o", "max_length=40", "--out", str(out))
    assert report["kept_existing"] == [] and report["rows_filled"] == 4
    data = out.read_bytes()
    assert not data.startswith(b"\xef\xbb\xbf") and b"\r\n" not in data.replace(b"</p>\r\n", b"").replace(
        b"</li>\r\n", b"")
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
    assert rows[4][12] == "Blue ceramic mug" and rows[6][12] == "Yellow cap with a curved brim and an…"


def test_rows_match_by_handle_and_position_pattern(home: Path, engine, tmp_path: Path) -> None:
    for position, colour in ((1, "red"), (2, "maroon")):
        image = make_image(tmp_path / "img" / f"red-shirt-{position}.jpg", colour)
        add_reviewed(engine, image, f"Shirt view {position}")
    source = tmp_path / "export.csv"
    source.write_bytes(build({"A1": "", "A2": "", "A3": ""}))
    out = tmp_path / "filled.csv"
    report = run("-o", f"input={source}", "-o", "match=pattern", "--out", str(out))
    rows = list(csv.reader(io.StringIO(out.read_bytes().decode("utf-8-sig"), newline="")))
    assert (rows[1][12], rows[3][12]) == ("Shirt view 1", "Shirt view 2")
    assert report["rows_filled"] == 2 and report["unmatched_images"] == []
    result = CliRunner().invoke(cli, ["export", "shopify", "-o", "pattern={sku}.jpg"])
    assert result.exit_code == 1 and "plugin_config.shopify.pattern" in result.output


def test_a_fresh_csv_when_there_is_no_export(home: Path, engine, tmp_path: Path) -> None:
    add_reviewed(engine, make_image(tmp_path / "img" / "red-shirt-2.jpg", "maroon"), "Red shirt, back")
    add_reviewed(engine, make_image(tmp_path / "img" / "red-shirt-1.jpg", "red"), "Red shirt, front")
    add_reviewed(engine, make_image(tmp_path / "img" / "Blue Mug.png", "blue"), "Blue mug")
    out = tmp_path / "alt.csv"
    report = run("-o", "src_prefix=https://cdn.example.com/img/", "--out", str(out))
    assert report["rows_filled"] == 3
    assert list(csv.reader(io.StringIO(out.read_text(), newline=""))) == [
        ["Handle", "Image Src", "Image Position", "Image Alt Text"],
        ["blue-mug", "https://cdn.example.com/img/Blue%20Mug.png", "1", "Blue mug"],
        ["red-shirt", "https://cdn.example.com/img/red-shirt-1.jpg", "1", "Red shirt, front"],
        ["red-shirt", "https://cdn.example.com/img/red-shirt-2.jpg", "2", "Red shirt, back"],
    ]


def test_two_images_with_one_name_and_different_texts_are_ambiguous(home: Path, engine, tmp_path: Path) -> None:
    add_reviewed(engine, make_image(tmp_path / "a" / "blue-mug.png", "blue"), "Blue mug")
    add_reviewed(engine, make_image(tmp_path / "b" / "blue-mug.png", "navy"), "Navy mug")
    source = tmp_path / "export.csv"
    source.write_bytes(build({"A1": "", "A2": "", "A3": ""}))
    report = run("-o", f"input={source}", "-o", "overwrite=true", "--out", str(tmp_path / "o.csv"))
    assert report["ambiguous"] == [{"key": "blue-mug.png", "paths": [str(tmp_path / "a" / "blue-mug.png"),
                                                                     str(tmp_path / "b" / "blue-mug.png")]}]
    assert report["rows_filled"] == 0


def test_bad_input_is_refused_with_the_file_and_the_reason(home: Path, engine, tmp_path: Path) -> None:
    ids = add_image(engine, make_image(tmp_path / "img" / "red-shirt.jpg"))
    review(engine, ids["alt_text"])
    out = tmp_path / "o.csv"
    latin = tmp_path / "latin1.csv"
    latin.write_bytes((HEADER + "\r\nred-shirt,Café").encode("latin-1"))
    assert "latin1.csv: not UTF-8 (byte 0xe9 on line 2)" in run("-o", f"input={latin}", "--out", str(out),
                                                                    code=1)["output"]
    other = tmp_path / "orders.csv"
    other.write_text("Name,Email\n#1001,a@example.com\n")
    message = run("-o", f"input={other}", "--out", str(out), code=1)["output"]
    assert "orders.csv: no column 'Handle', 'Image Src', 'Image Alt Text'" in message
    broken = tmp_path / "broken.csv"
    broken.write_text(HEADER + '\nred-shirt,"Red" Shirt,,,,,,,,,x/red-shirt.jpg,1,,,,,\n')
    assert "broken.csv: cannot split record 2 (line 2) safely" in run("-o", f"input={broken}", "--out", str(out),
                                                                      code=1)["output"]
    source = tmp_path / "export.csv"
    source.write_bytes(build({"A1": "", "A2": "", "A3": ""}))
    assert "is the input CSV" in run("-o", f"input={source}", "--out", str(source), "--force", code=1)["output"]
    assert "cannot read the Shopify CSV" in run("-o", f"input={tmp_path / 'nope.csv'}", code=1)["output"]
    assert not out.exists()
