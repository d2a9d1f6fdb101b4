"""Consistency warnings in the review app at 80x24: the detail pane lists them with the product
context, `w` and the filter form keep to captions with warnings."""

from __future__ import annotations

import pytest
from textual.widgets import Checkbox

from catalogcap.review.queue import Filters
from catalogcap.review.screens import FilterScreen
from catalogcap.store.captions import save_model_captions
from catalogcap.store.database import write_session
from catalogcap.store.models import KINDS, Asset, AssetPath
from tests.factories import caption, make_app, ready, settled, until

pytestmark = pytest.mark.asyncio
SMALL = (80, 24)
NAVY = {"fields": {"color": "navy", "category": "shirt"}, "template": "a photo of", "prompt": "a photo of"}


def _seed(engine) -> dict[str, int]:
    ids = {}
    with write_session(engine) as session:
        for n, alt in enumerate(("A navy shirt", "A blue shirt", "A navy shirt, slim")):
            asset = Asset(fingerprint=f"{n:064x}", size=1, width=8, height=8, format="JPEG", state="captioned")
            session.add(asset)
            session.flush()
            session.add(AssetPath(asset_id=asset.id, path=f"/shop/shirt-{n}.jpg", size=1, mtime_ns=1))
            saved = save_model_captions(session, asset.id, {"alt_text": alt, "description": "A shirt."},
                                        model="m", adapter_id=None, generation={k: {} for k in KINDS},
                                        context={"alt_text": NAVY, "description": {}})
            ids[alt] = next(c.id for c in saved if c.kind == "alt_text")
    return ids


async def test_warnings_are_listed_and_filtered(engine) -> None:
    ids = _seed(engine)
    app, _ = make_app(engine, filters=Filters(kind="alt_text"))
    async with app.run_test(size=SMALL) as pilot:
        await ready(pilot)
        assert "color=navy" in app.screen_text()
        assert "says 'blue'" not in app.screen_text()
        await pilot.press("w")
        await ready(pilot)
        assert [item.id for item in app.rows.items] == [ids["A blue shirt"]]
        screen = " ".join(app.screen_text().replace("▏", " ").split())
        assert "with warnings" in screen and "says 'blue' but the catalog's colour is 'navy'" in screen
        await pilot.press("e")
        app.query_one("#prompt").value = "A navy shirt, corrected"
        await pilot.press("enter")
        await settled(pilot)
        await pilot.press("w")  # all again
        await ready(pilot)
        assert len(app.rows.items) == 2 and not app.filters.warnings
        await pilot.press("f")
        assert isinstance(app.screen, FilterScreen)
        app.screen.query_one("#f-warnings", Checkbox).value = True
        app.screen.query_one("#f-search").focus()
        await pilot.press("enter")  # Enter in the form applies it (Apply is below the fold at 80x24)
        await pilot.pause()
        assert app.filters == Filters(kind="alt_text", warnings=True)
        await until(pilot, lambda: app.rows.items == [])  # the one with a warning was corrected
    assert caption(engine, ids["A blue shirt"]).warnings == []
