"""The `product_context` plugin hook: fields from a PIM/DAM plugin merged at the plugins' rank
(api > sidecar > plugin > import); a failing plugin is named, counted and ignored."""

from __future__ import annotations

import logging

from catalogcap.plugins import hookimpl
from catalogcap.plugins.manager import make_manager
from catalogcap.products.context import context_for, fold
from catalogcap.products.hooks import context_with_plugins
from catalogcap.store.database import write_session
from catalogcap.store.models import Asset, AssetPath, Product


class Pim:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    @hookimpl
    def product_context(self, path, asset):
        self.calls.append((path, asset.id, asset.fingerprint, asset.paths))
        return {"Title": "PIM title", "Season": "Winter", "Colour ": "green", "stock": 3, "skip": ["x"],
                "flag": True}


class Broken:
    @hookimpl
    def product_context(self, asset):
        raise RuntimeError("PIM is down")


class Wrong:
    @hookimpl
    def product_context(self, path):
        return ["not", "a", "dict"]


class Nothing:
    @hookimpl
    def product_context(self, path):
        return None


def _asset(session) -> int:
    asset = Asset(fingerprint="f" * 64, size=1, width=4, height=3, format="JPEG")
    session.add(asset)
    session.flush()
    session.add(AssetPath(asset_id=asset.id, path="/photos/lamp.jpg", size=1, mtime_ns=1))
    session.add(Product(key="csv:lamp.jpg", source="csv", file="lamp.jpg", file_folded=fold("lamp.jpg"),
                        title="CSV title", brand="CSV brand", fields={"season": "Summer"}))
    session.add(Product(key=f"api:{asset.id}", source="api", asset_id=asset.id, title="API title"))
    session.flush()
    return asset.id


def test_plugin_fields_rank_between_api_and_import(engine, caplog) -> None:
    pm = make_manager([])
    pim = Pim()
    for name, plugin in (("pim", pim), ("broken", Broken()), ("wrong", Wrong()), ("nothing", Nothing())):
        pm.register(plugin, name=name)
    with write_session(engine) as session:
        asset_id = _asset(session)
        with caplog.at_level(logging.ERROR, logger="catalogcap.plugins"):
            context = context_with_plugins(session, asset_id, pm=pm)
    assert context.fields == {"title": "API title", "brand": "CSV brand", "season": "Winter", "color": "green",
                              "stock": "3"}
    assert [s["source"] for s in context.sources] == ["api", "plugin", "csv"]
    assert context.sources[1]["origin"] == "pim"
    assert pim.calls == [("/photos/lamp.jpg", asset_id, "f" * 64, ("/photos/lamp.jpg",))]
    assert pm.failures() == {"broken": 1, "wrong": 1}
    assert "plugin broken failed in product_context: RuntimeError: PIM is down" in caplog.text
    assert "plugin wrong failed in product_context: TypeError: returned list, not a dict" in caplog.text


def test_without_an_implementation_it_is_context_for(engine) -> None:
    pm = make_manager([])
    with write_session(engine) as session:
        asset_id = _asset(session)
        assert context_with_plugins(session, asset_id, pm=pm) == context_for(session, asset_id)
        assert context_with_plugins(session, asset_id, pm=pm).fields["title"] == "API title"
