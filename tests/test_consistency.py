"""Consistency warnings: a caption against its product context (colour, material, product type,
brand and title the prompt asked for) and the alt-text rules; stored on save, worked out again on
a reviewer's edit, and shown by `captions list/show`, the API and its filters."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from catalogcap.api.app import create_app
from catalogcap.cli import cli
from catalogcap.products.consistency import caption_warnings, catalog_vocabulary
from catalogcap.services import SILENT
from catalogcap.services.captions import Decision, decide_each, restore_together
from catalogcap.store.captions import decide, list_captions, save_model_captions
from catalogcap.store.database import read_session, write_session
from catalogcap.store.models import KINDS, Asset, AssetPath, Product
from tests.factories import bearer


def codes(text: str, kind: str = "alt_text", vocabulary=None, template: str | None = None, **fields: str
          ) -> list[str]:
    context = {"fields": fields, **({"template": template} if template else {})}
    return [w["code"] for w in caption_warnings(kind, text, context, alt_text_limit=125, vocabulary=vocabulary)]


@pytest.mark.parametrize(("text", "fields", "expected"), [
    ("A blue linen shirt", {"color": "navy"}, ["contradicts_color"]),
    ("A navy linen shirt", {"color": "navy"}, []),
    ("A dark navy linen shirt", {"color": "navy"}, []),
    ("A navy linen shirt", {"color": "Dark Navy"}, []),
    ("A navy linen shirt", {"color": "blue"}, []),  # a shade of the catalog's colour
    ("A gray shirt on a white background", {"color": "grey"}, []),  # the backdrop is not the product
    ("A red shirt", {"color": "navy/white"}, ["contradicts_color"]),
    ("A white shirt with navy stripes", {"color": "navy/white"}, []),
    ("A leather bag", {"material": "cotton canvas"}, ["contradicts_material"]),
    ("A wooden lamp", {"material": "oak"}, []),
    ("A pair of white sneakers", {"category": "Shoes"}, []),  # narrower type
    ("A white shoe", {"category": "sneakers"}, []),  # broader type
    ("A white dress", {"category": "Shirts"}, ["contradicts_category"]),
    ("A mug on a wooden table", {"category": "mug"}, []),  # the product is named: other things may be too
    ("Two mugs", {"category": "Mug"}, []),
    ("A stylish thing", {"color": "red", "material": "silk", "category": "dress"}, []),  # says nothing
])
def test_contradictions(text: str, fields: dict[str, str], expected: list[str]) -> None:
    assert codes(text, **fields) == expected


def test_messages_name_what_was_said_and_the_catalog_value() -> None:
    [warning] = caption_warnings("alt_text", "A blue shirt", {"fields": {"color": "navy"}}, alt_text_limit=125)
    assert warning == {"code": "contradicts_color", "field": "color", "said": "blue", "expected": "navy",
                       "message": "says 'blue' but the catalog's colour is 'navy'"}


def test_the_catalogs_own_words_count() -> None:
    assert codes("A heather jumper", color="navy") == []  # "heather" is no built-in colour
    assert codes("A heather jumper", color="navy", vocabulary={"color": frozenset({"heather"})}) == [
        "contradicts_color"]


def test_missing_brand_and_title_only_when_the_template_asked() -> None:
    fields = {"brand": "NordLight", "title": "Arc lamp"}
    assert codes("A red lamp", template="{brand} {title}: ", **fields) == ["missing_brand", "missing_title"]
    assert codes("nordlight ARC LAMP in red", template="{brand} {title}: ", **fields) == []
    assert codes("A red lamp", template="a photo of", **fields) == []
    assert codes("A red lamp", template="{brand} {title}") == []  # the context had no value


def test_text_rules_and_length() -> None:
    assert codes("Image of a red red shirt") == ["filler_opening", "repeats"]
    assert codes("arafed shirt") == ["artefact"]
    assert codes("x" * 130) == ["too_long"]
    assert codes("Image of a shirt", kind="description") == []  # screen readers say "image" before alt text only


def _asset(session, n: int, path: str) -> int:
    asset = Asset(fingerprint=f"{n:064x}", size=1, state="captioned")
    session.add(asset)
    session.flush()
    session.add(AssetPath(asset_id=asset.id, path=path, size=1, mtime_ns=1))
    session.flush()
    return asset.id


def _save(session, asset_id: int, alt: str, context: dict) -> dict[str, int]:
    saved = save_model_captions(session, asset_id, {"alt_text": alt, "description": "A product."}, model="m",
                                adapter_id=None, generation={k: {} for k in KINDS},
                                context={"alt_text": context, "description": {}})
    return {c.kind: c.id for c in saved}


NAVY = {"fields": {"color": "navy", "brand": "Acme"}, "template": "{brand}: ", "prompt": "Acme: "}


def test_saved_with_warnings_recomputed_on_edit_and_filtered(engine) -> None:
    with write_session(engine) as session:
        shirt = _save(session, _asset(session, 1, "/c/shirt.jpg"), "Acme blue shirt", NAVY)
        fine = _save(session, _asset(session, 2, "/c/fine.jpg"), "Acme navy shirt", NAVY)
        session.add(Product(key="csv:x", source="csv", color="Heather"))
    with read_session(engine) as session:
        rows = {r.id: r for r in list_captions(session, kind="alt_text")}
        assert [w["code"] for w in rows[shirt["alt_text"]].warnings] == ["contradicts_color"]
        assert rows[shirt["alt_text"]].context == NAVY and rows[fine["alt_text"]].warnings == []
        assert [r.id for r in list_captions(session, warnings=True)] == [shirt["alt_text"]]
        assert shirt["alt_text"] not in [r.id for r in list_captions(session, warnings=False)]
        assert "heather" in catalog_vocabulary(session)["color"]  # the catalog's words, read again after a change
    with write_session(engine) as session:
        edited = decide(session, shirt["alt_text"], "edit", reviewer="ann", text="A navy shirt")
        assert [w["code"] for w in edited.warnings] == ["missing_brand"]
        edited = decide(session, shirt["alt_text"], "edit", reviewer="ann", text="Acme heather shirt",
                        expected_version=edited.version)
        assert [w["code"] for w in edited.warnings] == ["contradicts_color"]
        reset = decide(session, shirt["alt_text"], "reset", reviewer="ann")
        assert reset.text == "Acme blue shirt" and [w["code"] for w in reset.warnings] == ["contradicts_color"]
    # undo puts the warnings of the text back with it (the review app's u, through the service)
    decided = decide_each(engine, SILENT, [shirt["alt_text"]],
                          Decision("edit", "ann", text="Acme navy shirt", alt_text_limit=125))
    assert decided.changes[0].after.warnings == []
    undone = restore_together(engine, SILENT, [(shirt["alt_text"], decided.changes[0].before,
                                                decided.changes[0].after.version)])
    assert [w["code"] for w in undone.changes[0].after.warnings] == ["contradicts_color"]
    with write_session(engine) as session:
        assert decide(session, fine["alt_text"], "edit", reviewer="ann", text="Acme navy shirt, slim").warnings == []


def test_cli_and_api_show_context_and_warnings(engine, settings) -> None:
    with write_session(engine) as session:
        shirt = _save(session, _asset(session, 1, "/c/shirt.jpg"), "Acme blue shirt", NAVY)
        _save(session, _asset(session, 2, "/c/fine.jpg"), "Acme navy shirt", NAVY)
    runner = CliRunner()
    listed = json.loads(runner.invoke(cli, ["captions", "list", "--warnings", "--json"]).stdout)
    assert [item["id"] for item in listed] == [shirt["alt_text"]]
    assert listed[0]["context"] == NAVY and listed[0]["warnings"][0]["said"] == "blue"
    table = runner.invoke(cli, ["captions", "list", "--kind", "alt_text"]).stdout.splitlines()
    assert table[0].split("\t")[-1] == "warnings"
    assert [line.split("\t")[-1] for line in table[1:]] == ["contradicts_color", ""]
    shown = json.loads(runner.invoke(cli, ["captions", "show", str(shirt["alt_text"]), "--json"]).stdout)
    assert shown["context"] == NAVY and shown["warnings"][0]["code"] == "contradicts_color"
    human = runner.invoke(cli, ["captions", "show", str(shirt["alt_text"])]).stdout
    assert "contradicts_color: says 'blue' but the catalog's colour is 'navy'" in human

    with TestClient(create_app(settings, engine, run_worker=False), raise_server_exceptions=False) as client:
        headers = bearer(engine, "read")
        page = client.get("/v1/captions", params={"warnings": "true"}, headers=headers).json()
        assert [item["id"] for item in page["items"]] == [shirt["alt_text"]]
        assert page["items"][0]["context"] == NAVY and page["items"][0]["warnings"][0]["expected"] == "navy"
        assert len(client.get("/v1/captions", params={"warnings": "false"}, headers=headers).json()["items"]) == 3
        one = client.get(f"/v1/captions/{shirt['alt_text']}", headers=headers).json()
        assert one["warnings"][0]["code"] == "contradicts_color" and one["source"] is None


def test_product_data_imported_after_captioning_is_checked_at_once(home, engine, tmp_path) -> None:
    """No field in any template: the catalog's colour still checks the caption, as soon as a
    products file says it (and a corrected file takes the warning away)."""
    with write_session(engine) as session:
        shirt = _save(session, _asset(session, 1, str(tmp_path / "shirt.jpg")), "A blue shirt", {})
        other = _save(session, _asset(session, 2, str(tmp_path / "other.jpg")), "A blue mug", {})
    with read_session(engine) as session:
        assert all(r.warnings == [] for r in list_captions(session))
    products = tmp_path / "products.csv"
    products.write_text("file,colour,title\nshirt.jpg,Navy,Oxford shirt\n")
    runner = CliRunner()
    assert runner.invoke(cli, ["products", "import", str(products), "--json"]).exit_code == 0
    shown = json.loads(runner.invoke(cli, ["captions", "show", str(shirt["alt_text"]), "--json"]).stdout)
    assert [w["code"] for w in shown["warnings"]] == ["contradicts_color"]
    assert shown["context"]["fields"] == {"color": "Navy", "title": "Oxford shirt"}
    assert "template" not in shown["context"]
    untouched = json.loads(runner.invoke(cli, ["captions", "show", str(other["alt_text"]), "--json"]).stdout)
    assert untouched["warnings"] == [] and untouched["context"] == {}
    products.write_text("file,colour,title\nshirt.jpg,Blue,Oxford shirt\n")
    assert runner.invoke(cli, ["products", "import", str(products), "--json"]).exit_code == 0
    shown = json.loads(runner.invoke(cli, ["captions", "show", str(shirt["alt_text"]), "--json"]).stdout)
    assert shown["warnings"] == [] and shown["version"] == 1  # rechecked, not re-decided


def test_a_prompted_prefix_is_not_the_models_claim_and_all_product_data_is_checked() -> None:
    context = {"fields": {"brand": "Ceramica Brava", "category": "bag"}, "template": "{brand} {category},",
               "prompt": "Ceramica Brava bag,", "product": {"category": "bag", "material": "canvas", "color": "purple"}}
    text = "Ceramica Brava bag, a purple striped ceramic mug"
    codes = [w["code"] for w in caption_warnings("alt_text", text, context, alt_text_limit=125)]
    assert sorted(codes) == ["contradicts_category", "contradicts_material"]
    right = "Ceramica Brava bag, a purple striped canvas bag"
    assert caption_warnings("alt_text", right, context, alt_text_limit=125) == []
