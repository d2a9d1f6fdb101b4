"""`catalogcap products import|show|list`: CSV and Shopify exports into product rows, matched to
images the way the Shopify exporter matches them; bad input refused whole or reported by line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlmodel import select

from catalogcap.cli import cli
from catalogcap.intake import scan
from catalogcap.products import context_for, importer
from catalogcap.store.database import read_session
from catalogcap.store.models import Caption, Product
from tests.conftest import make_image


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def run_json(*args: str) -> dict:
    return json.loads(run(*args, "--json"))


def products(engine) -> dict[str, Product]:
    with read_session(engine) as session:
        return {p.key: p for p in session.exec(select(Product)).all()}


def alt_caption(engine, asset_id: int) -> Caption | None:
    with read_session(engine) as session:
        return session.exec(select(Caption).where(Caption.asset_id == asset_id, Caption.kind == "alt_text")).first()


@pytest.fixture
def shop(tmp_path: Path, engine, settings) -> dict[str, int]:
    """Two registered images (no captions yet): photos/Lamp-01.JPG and photos/chairs/chair.png."""
    folder = tmp_path / "photos"
    make_image(folder / "Lamp-01.JPG", "red")
    make_image(folder / "chairs" / "chair.png", "blue")
    report = scan(engine, [folder], settings)
    assert report.outcomes["new"] == 2
    with read_session(engine) as session:
        from catalogcap.store.models import AssetPath

        return {Path(p.path).name: p.asset_id for p in session.exec(select(AssetPath)).all()}


def test_csv_import_maps_columns_matches_files_and_is_idempotent(home, engine, shop, tmp_path) -> None:
    csv_file = tmp_path / "catalog.csv"
    csv_file.write_text(
        "File,Title,Vendor,Colour,Fit / Cut,Material,Alt,Notes\n"
        "lamp-01.jpg,Arc lamp,NordLight,red,,steel,Red arc lamp on a white floor,=HYPERLINK(\"http://x\")\n"
        "chairs/chair.png,Oak chair,Woodly,,slim,oak,,\n"
        "\n"
        "other/chair.png,Wrong folder chair,,,,,,\n"
        "sofa.jpg,Sofa,,,,,,\n", encoding="utf-8")
    report = run_json("products", "import", str(csv_file))
    assert report == {"rows": 4, "matched": 2, "unmatched": 2, "updated": 0, "unmatched_rows": [
        {"line": 5, "reason": "no image named other/chair.png in the store yet (kept: it links when the file"
                              " arrives)"},
        {"line": 6, "reason": "no image named sofa.jpg in the store yet (kept: it links when the file arrives)"}]}
    rows = products(engine)
    assert set(rows) == {"csv:lamp-01.jpg", "csv:chairs/chair.png", "csv:other/chair.png", "csv:sofa.jpg"}
    lamp = rows["csv:lamp-01.jpg"]
    assert (lamp.title, lamp.brand, lamp.color, lamp.material, lamp.file_folded) == (
        "Arc lamp", "NordLight", "red", "steel", "lamp-01.jpg")
    assert lamp.fields == {"notes": '=HYPERLINK("http://x")'}  # a formula is stored as the text it is
    assert lamp.origin == str(csv_file.absolute())
    assert rows["csv:chairs/chair.png"].fields == {"fit_cut": "slim"}
    with read_session(engine) as session:
        assert context_for(session, shop["chair.png"]).fields["title"] == "Oak chair"
    caption = alt_caption(engine, shop["Lamp-01.JPG"])
    assert (caption.text, caption.state, caption.source) == ("Red arc lamp on a white floor", "accepted", "csv")
    assert alt_caption(engine, shop["chair.png"]) is None

    again = run_json("products", "import", str(csv_file))
    assert (again["rows"], again["updated"]) == (4, 0)
    csv_file.write_text(csv_file.read_text().replace("Oak chair", "Oak armchair"), encoding="utf-8")
    assert run_json("products", "import", str(csv_file))["updated"] == 1
    assert len(products(engine)) == 4
    shown = run_json("products", "show", str(tmp_path / "photos" / "chairs" / "chair.png"))
    assert shown["fields"]["title"] == "Oak armchair" and shown["sources"][0]["key"] == "csv:chairs/chair.png"
    listed = run_json("products", "list", "--unmatched")
    assert [item["key"] for item in listed] == ["csv:other/chair.png", "csv:sofa.jpg"]
    human = run("products", "import", str(csv_file))
    assert "sofa.jpg" in human and "updated" in human


def test_formula_looking_alt_text_is_data_and_exported_neutralised(home, engine, shop, tmp_path) -> None:
    csv_file = tmp_path / "catalog.csv"
    csv_file.write_text('file,alt\nlamp-01.jpg,"=HYPERLINK(""http://evil"",""lamp"")"\n')
    assert run_json("products", "import", str(csv_file))["matched"] == 1
    assert alt_caption(engine, shop["Lamp-01.JPG"]).text == '=HYPERLINK("http://evil","lamp")'
    exported = run("export", "csv", "--kind", "alt_text")
    assert """'=HYPERLINK(""http://evil"",""lamp"")""" in exported


def test_an_image_arriving_later_links_and_takes_the_alt_text(home, engine, settings, tmp_path) -> None:
    csv_file = tmp_path / "catalog.csv"
    csv_file.write_text("file,title,alt_text\nsofa.jpg,Green sofa,A green sofa with three cushions\n")
    assert run_json("products", "import", str(csv_file))["unmatched"] == 1
    folder = tmp_path / "later"
    make_image(folder / "Sofa.jpg", "green")
    report = scan(engine, [folder], settings)
    (asset_id,) = report.asset_ids
    caption = alt_caption(engine, asset_id)
    assert (caption.text, caption.source, caption.state) == ("A green sofa with three cushions", "csv", "accepted")
    assert run_json("products", "list", "--unmatched") == []


SHOPIFY = (
    "Handle,Title,Body (HTML),Vendor,Type,Tags,Option1 Name,Option1 Value,Option2 Name,Option2 Value,Variant SKU,"
    "Image Src,Image Position,Image Alt Text\n"
    "arc-lamp,Arc Lamp,<p>x</p>,NordLight,Lamps,\"living, steel\",Color,Red,Size,L,AL-R-L,"
    "https://cdn.shopify.com/s/files/1/products/Lamp-01.JPG?v=17,1,Red arc lamp\n"
    "arc-lamp,,,,,,,Blue,,M,AL-B-M,,,\n"
    "arc-lamp,,,,,,,,,,,https://cdn.shopify.com/s/files/1/products/"
    "lamp%20back_0a1b2c3d-1111-2222-3333-444455556666.jpg,2,\n"
    "mug,Mug,,Acme,Kitchen,,Title,Default Title,,,MUG-1,https://cdn.shopify.com/s/files/1/products/mug.png,1,\n"
)


def test_shopify_export_carries_product_fields_down(home, engine, shop, tmp_path) -> None:
    export = tmp_path / "products_export.csv"
    export.write_bytes(b"\xef\xbb\xbf" + SHOPIFY.encode())
    report = run_json("products", "import", str(export))
    assert (report["rows"], report["matched"], report["unmatched"]) == (3, 1, 2)
    rows = products(engine)
    assert set(rows) == {"shopify:Lamp-01.JPG", "shopify:lamp back.jpg", "shopify:mug.png"}
    front, back = rows["shopify:Lamp-01.JPG"], rows["shopify:lamp back.jpg"]
    assert (front.title, front.brand, front.category, front.sku, front.color, front.alt_text) == (
        "Arc Lamp", "NordLight", "Lamps", "AL-R-L", "Red", "Red arc lamp")
    assert front.fields == {"handle": "arc-lamp", "size": "L", "tags": "living, steel"}
    assert (back.title, back.brand, back.sku, back.color) == ("Arc Lamp", "NordLight", None, None)
    assert rows["shopify:mug.png"].fields == {"handle": "mug"}  # Shopify's "Default Title" option is no field
    assert alt_caption(engine, shop["Lamp-01.JPG"]).source == "shopify"


def test_import_matches_files_as_the_shopify_exporter_does(tmp_path) -> None:
    fill = pytest.importorskip("catalogcap_shopify.fill")
    for src in ("https://cdn.shopify.com/a/Lamp%20Back_0a1b2c3d-1111-2222-3333-444455556666.JPG?v=1",
                "https://cdn.shopify.com/a/mug.png", "plain-name.webp"):
        assert fill.src_key(src) == fill.file_key(importer.src_file(src))


@pytest.mark.parametrize(("content", "message"), [
    (b"file,title\nlamp.jpg,Caf\xe9\n", "not UTF-8 (byte 0xe9 at offset 23, line 2)"),
    (b"Handle,Title,Image Alt Text\nx,X,\n", "no column 'Image Src'"),
    (b"sku,title\nA,B\n", "no `file` column"),
    (b"file,colour,Color\nlamp.jpg,red,blue\n", "columns 2 ('colour') and 3 ('Color') both mean `color`"),
    (b"file,title\nlamp.jpg,Lamp\nmug.jpg,Mug,extra\n", "line 3: 3 cells but the header has 2 columns"),
    (b"file,title\nlamp.jpg,\"unclosed\n", "not readable as CSV"),
])
def test_structural_errors_refuse_the_file_and_change_nothing(home, engine, tmp_path, content, message) -> None:
    good = tmp_path / "good.csv"
    good.write_text("file,title\nlamp.jpg,Lamp\n")
    run_json("products", "import", str(good))
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content.replace(b"lamp.jpg,Lamp", b"lamp.jpg,Changed"))
    args = ["products", "import", str(bad)] + (["--format", "shopify"] if b"Handle" in content else [])
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert message in result.output and str(bad) in result.output
    assert {k: p.title for k, p in products(engine).items()} == {"csv:lamp.jpg": "Lamp"}


def test_oversized_cells_and_rows_are_refused_naming_the_line(home, engine, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(importer, "MAX_CELL_BYTES", 100)
    bad = tmp_path / "big.csv"
    bad.write_text("file,title\nlamp.jpg,Lamp\nmug.jpg," + "x" * 101 + "\n")
    result = CliRunner().invoke(cli, ["products", "import", str(bad)])
    assert result.exit_code == 1 and "line 3, column 2: a cell of 101 bytes" in result.output
    monkeypatch.setattr(importer, "MAX_CELL_BYTES", 10 * 2**20)
    monkeypatch.setattr(importer, "MAX_ROW_BYTES", 150)
    bad.write_text("file,title,notes\nlamp.jpg," + "x" * 80 + "," + "y" * 80 + "\n")
    result = CliRunner().invoke(cli, ["products", "import", str(bad)])
    assert result.exit_code == 1 and "line 2: a row of 168 bytes" in result.output
    assert products(engine) == {}


def test_duplicates_and_bad_rows_are_reported_by_line(home, engine, tmp_path) -> None:
    data = tmp_path / "dupes.csv"
    data.write_text("file,title\nlamp.jpg,First\n,No file\nlamp.jpg,Second\n../../etc/passwd,Escape\n")
    report = run_json("products", "import", str(data))
    assert report["rows"] == 4
    reasons = {item["line"]: item["reason"] for item in report["unmatched_rows"]}
    assert reasons[3] == "no file name; row not imported"
    assert "a second row for lamp.jpg (line 2 has it too)" in reasons[4]
    assert "not a file name or a relative path" in reasons[5]
    assert {k: p.title for k, p in products(engine).items()} == {"csv:lamp.jpg": "First"}


def test_a_missing_file_is_one_line_and_exit_1(home, tmp_path) -> None:
    result = CliRunner().invoke(cli, ["products", "import", str(tmp_path / "nope.csv")])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: cannot read") and len(result.output.strip().splitlines()) == 1
    assert CliRunner().invoke(cli, ["products", "show", "999"]).exit_code == 1
