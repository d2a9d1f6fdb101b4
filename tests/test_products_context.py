"""The product context of an image: rows matched by file name, relative path or asset, merged
with the more specific source winning."""

from __future__ import annotations

from sqlmodel import select

from catalogcap.products import context_for, match_keys
from catalogcap.products.context import fold
from catalogcap.store.captions import import_human, save_model_captions
from catalogcap.store.database import write_session
from catalogcap.store.models import Asset, AssetPath, Caption, Product


def _asset(session, n: int, *paths: str) -> int:
    asset = Asset(fingerprint=f"{n:064x}", size=1)
    session.add(asset)
    session.flush()
    for path in paths:
        session.add(AssetPath(asset_id=asset.id, path=path, size=1, mtime_ns=1))
    session.flush()
    return asset.id


def _product(session, key: str, source: str, **values) -> None:
    file = values.get("file")
    session.add(Product(key=key, source=source, file_folded=fold(file) if file else None, **values))
    session.flush()


def test_match_keys_are_every_relative_tail() -> None:
    assert match_keys("/photos/a/b.jpg") == ["photos/a/b.jpg", "a/b.jpg", "b.jpg"]


def test_context_merges_sources_most_specific_last(engine) -> None:
    with write_session(engine) as session:
        lamp = _asset(session, 1, "/photos/lamps/Lamp-01.JPG")
        other = _asset(session, 2, "/photos/chairs/lamp-01.jpg.bak")
        _product(session, "csv:lamp-01.jpg", "csv", file="lamp-01.jpg", title="Arc lamp", brand="NordLight",
                 color="red", fields={"collection": "Aurora", "empty": " "})
        _product(session, "csv:other/lamp-01.jpg", "csv", file="other/lamp-01.jpg", title="Wrong folder")
        _product(session, f"api:{lamp}", "api", asset_id=lamp, color="crimson")
        context = context_for(session, lamp)
        assert context.fields == {"title": "Arc lamp", "brand": "NordLight", "color": "crimson",
                                  "collection": "Aurora"}
        assert [s["source"] for s in context.sources] == ["api", "csv"]
        assert not context_for(session, other)


def test_human_alt_text_is_kept_over_model_text(engine) -> None:
    generation = {"alt_text": {}, "description": {}}
    with write_session(engine) as session:
        asset = _asset(session, 3, "/photos/x.jpg")
        assert import_human(session, asset, "alt_text", "  Red  arc lamp ", source="xmp").state == "accepted"
        assert import_human(session, asset, "alt_text", "x" * 500, source="xmp") is None  # over the limit
        save_model_captions(session, asset, {"alt_text": "a lamp", "description": "a red lamp"}, model="m",
                            adapter_id=None, generation=generation)
        rows = {c.kind: c for c in session.exec(select(Caption).where(Caption.asset_id == asset)).all()}
    assert (rows["alt_text"].text, rows["alt_text"].source, rows["alt_text"].model) == ("Red arc lamp", "xmp", "")
    assert rows["description"].source is None and rows["description"].state == "pending"


def test_a_reviewers_change_to_imported_text_survives_a_reimport(engine) -> None:
    from catalogcap.store.captions import decide

    with write_session(engine) as session:
        asset = _asset(session, 4, "/photos/y.jpg")
        first = import_human(session, asset, "alt_text", "Blue mug", source="shopify")
        assert import_human(session, asset, "alt_text", "Blue mug, 300 ml", source="shopify").text == "Blue mug, 300 ml"
        decide(session, first.id, "edit", reviewer="ana", text="Cobalt blue mug")
        assert import_human(session, asset, "alt_text", "Blue mug again", source="shopify").text == "Cobalt blue mug"
        assert import_human(session, asset, "alt_text", "Mug from XMP", source="xmp").text == "Cobalt blue mug"
