"""The review app driven from the keyboard with Textual's Pilot, against a real temp database."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from textual.widgets import Input, Select

from catalogcap.review import queue
from catalogcap.review.preview import ImageWidget
from catalogcap.review.queue import PAGE_SIZE, Filters
from catalogcap.review.screens import FilterScreen, HelpScreen
from catalogcap.review.widgets import Prompt
from catalogcap.store.captions import decide, save_model_captions
from catalogcap.store.database import write_session
from catalogcap.store.models import Asset, AssetPath
from tests.conftest import make_image
from tests.factories import add_captions, caption, fill_pending, make_app, prompt_input, ready, settled, until

pytestmark = pytest.mark.asyncio
SIZE = (140, 40)


async def test_accept_saves_at_once_and_moves_to_the_next(engine) -> None:
    ids = add_captions(engine, 3)
    heard: list[tuple[list[int], str]] = []
    app, _ = make_app(engine, on_reviewed=lambda ids, decision: heard.append((ids, decision)))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert "6 left" in app.screen_text()
        await pilot.press("a")
        assert app.current().id == ids[1]  # moved on before the write finished
        await settled(pilot)
        assert "5 left" in app.screen_text()
        saved = caption(engine, ids[0])
        assert (saved.state, saved.reviewer, saved.text) == ("accepted", "alice", saved.model_text)
        assert saved.reviewed_at is not None
    assert heard == [([ids[0]], "accept")]  # plugins hear of it (on their own thread)


async def test_edit_counts_characters_warns_and_saves_the_correction(engine) -> None:
    ids = add_captions(engine, 2)
    app, _ = make_app(engine, alt_text_limit=40)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("e")
        assert app.query_one(Prompt).is_open and app.focused is prompt_input(app)
        assert "20/40 characters" in app.screen_text()
        app.query_one(Prompt).value = ""
        await pilot.press(*"Image of a shirt shirt arafed")
        screen = app.screen_text()
        assert "29/40 characters" in screen
        assert 'starts with "image of"' in screen and "artefact" in screen and "repeats itself" in screen
        app.query_one(Prompt).value = "A red linen shirt with white buttons"
        await pilot.press("enter")
        await settled(pilot)
        saved = caption(engine, ids[0])
        assert (saved.state, saved.text, saved.model_text) == (
            "edited", "A red linen shirt with white buttons", "A red shirt number 0")
        assert app.current().id == ids[1] and app.focused is app.table


async def test_edit_refuses_alt_text_over_the_limit_and_escape_cancels(engine) -> None:
    ids = add_captions(engine, 1)
    app, shown = make_app(engine, alt_text_limit=30)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("e")
        app.query_one(Prompt).value = "x" * 31
        await pilot.press("enter")
        assert app.query_one(Prompt).is_open
        assert any("over the limit of 30" in message for _, message in shown)
        await pilot.press("escape")
        assert not app.query_one(Prompt).is_open and app.focused is app.table
        await settled(pilot)
    assert caption(engine, ids[0]).state == "pending"


async def test_reject_with_and_without_a_reason(engine) -> None:
    ids = add_captions(engine, 1)
    app, _ = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("r", *"wrong colour", "enter")
        await pilot.press("r", "enter")
        await settled(pilot)
    first, second = caption(engine, ids[0]), caption(engine, ids[1])
    assert (first.state, first.reject_reason) == ("rejected", "wrong colour")
    assert (second.state, second.reject_reason) == ("rejected", None)


async def test_skip_decides_nothing_and_undo_goes_back(engine) -> None:
    ids = add_captions(engine, 2)
    app, shown = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("s")
        assert app.current().id == ids[1]
        await pilot.press("a")
        await settled(pilot)
        assert caption(engine, ids[1]).state == "accepted"
        await pilot.press("u")
        await settled(pilot)
        assert app.current().id == ids[1]  # the cursor is back on the undone caption
        undone = caption(engine, ids[1])
        assert (undone.state, undone.reviewer, undone.reviewed_at) == ("pending", None, None)
        await pilot.press("u")
        await settled(pilot)
        assert any(message == "Nothing to undo." for _, message in shown)
    assert caption(engine, ids[0]).state == "pending"


async def test_select_then_accept_the_selection_and_undo_it_whole(engine) -> None:
    ids = add_captions(engine, 3)
    app, shown = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("A")
        assert any("Nothing selected" in message for _, message in shown)
        await pilot.press("space", "down", "space", "space")  # rows 0, 2 and 3
        assert "3 selected" in app.screen_text()
        await pilot.press("A")
        await settled(pilot)
        assert [caption(engine, i).state for i in ids] == ["accepted", "pending", "accepted", "accepted",
                                                          "pending", "pending"]
        assert "3 selected" not in app.screen_text() and "3 left" in app.screen_text()
        await pilot.press("u")
        await settled(pilot)
        assert {caption(engine, i).state for i in ids} == {"pending"}


async def test_search_and_filters_change_the_queue(engine, tmp_path: Path) -> None:
    add_captions(engine, 3, folder="/shop/shirts")
    add_captions(engine, 2, folder="/shop/mugs", start=3, text=lambda n, kind: f"A blue mug {n} ({kind})")
    app, _ = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("slash", *"MUG", "enter")
        await ready(pilot)
        assert len(app.rows.items) == 4 and app.filters.search == "MUG"
        assert 'text ~ "MUG" · 4 left' in app.screen_text()
        await pilot.press("slash", "escape")  # cancelling keeps the search
        assert app.filters.search == "MUG"
        await pilot.press("f")
        assert isinstance(app.screen, FilterScreen)
        app.screen.query_one("#f-kind", Select).value = "description"
        app.screen.query_one("#f-search", Input).value = ""
        app.screen.query_one("#f-folder", Input).value = "/shop/shirts"
        await pilot.click("#apply")
        await ready(pilot)
        assert app.filters == Filters(kind="description", folder="/shop/shirts")
        assert [item.kind for item in app.rows.items] == ["description"] * 3
        await pilot.press("f", "escape")
        assert app.filters == Filters(kind="description", folder="/shop/shirts")


async def test_help_opens_and_quit_waits_for_the_last_decision(engine) -> None:
    ids = add_captions(engine, 1)
    app, _ = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert "undo the last decision" in app.screen_text()
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("a", "q")
        await pilot.pause()
    assert app.return_code == 0
    assert caption(engine, ids[0]).state == "accepted"


async def test_preview_shows_the_picture_in_half_blocks_or_says_why_not(engine, tmp_path: Path) -> None:
    picture = make_image(tmp_path / "red-shirt.jpg", "red", size=(300, 200))
    add_captions(engine, 1, paths=[picture])
    add_captions(engine, 1, start=1, paths=[tmp_path / "gone.jpg"])
    app, _ = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        widget = app.query_one("#picture")
        assert type(widget).__name__ == "HalfcellImage" and ImageWidget is type(widget)  # no graphics protocol
        await until(pilot, lambda: widget.image is not None)
        assert max(widget.image.size) <= 320 and widget.image.mode == "RGB"
        assert "▀" in app.screen_text()
        await pilot.press("s", "s")
        await until(pilot, lambda: "image not found" in app.screen_text())
        assert "gone.jpg" in app.screen_text()


async def test_second_reviewer_is_told_and_never_overwrites(engine) -> None:
    ids = add_captions(engine, 2)
    app, shown = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        with write_session(engine) as session:  # bob, in another process, decides two captions
            decide(session, ids[0], "reject", reviewer="bob", reason="blurry")
            decide(session, ids[1], "accept", reviewer="bob")
        await pilot.press("a")  # alice still sees caption 1 as pending (version 1)
        await settled(pilot)
        assert any(severity == "warning" and "changed by bob" in message for severity, message in shown)
        assert (caption(engine, ids[0]).state, caption(engine, ids[0]).reviewer) == ("rejected", "bob")
        assert app.rows.get(ids[0]).state == "rejected"
        # the cursor is on caption 2; its detail was read after bob's decision, so it says so
        assert app.current().id == ids[1] and app.detail.state == "accepted"
        assert "accepted by bob" in app.screen_text()
        await pilot.press("r")
        assert any(f"Caption {ids[1]} was already accepted by bob" in message for _, message in shown)
        assert not app.query_one(Prompt).is_open
    assert caption(engine, ids[1]).state == "accepted"


async def test_reviewing_while_the_daemon_writes(engine) -> None:
    """Decisions queue behind the daemon's transactions (no "database is locked"), and the
    captions it adds meanwhile join the end of the queue."""
    ids = add_captions(engine, 10)
    stop, errors = threading.Event(), []

    def daemon() -> None:
        n = 100
        try:
            while not stop.is_set():
                with write_session(engine) as session:
                    asset = Asset(fingerprint=f"{n:064x}", size=1, state="captioned")
                    session.add(asset)
                    session.flush()
                    session.add(AssetPath(asset_id=asset.id, path=f"/catalog/new/{n}.jpg", size=1, mtime_ns=1))
                    save_model_captions(session, asset.id, {"alt_text": f"new {n}", "description": f"new {n}."},
                                        model="blip", adapter_id=None, generation={"alt_text": {}, "description": {}})
                    time.sleep(0.05)  # a batch holds the write lock for a while
                n += 1
                time.sleep(0.01)  # then the next batch is read and captioned
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    app, shown = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        thread = threading.Thread(target=daemon)
        thread.start()
        try:
            for _ in ids:
                await pilot.press("a")
                await pilot.pause(0.02)
            await settled(pilot)
            app._tick()  # what the refresh timer does: the end was reached, look for new captions
            await until(pilot, lambda: len(app.rows.items) > len(ids))
        finally:
            stop.set()
            thread.join()
        assert not errors and not [m for severity, m in shown if severity == "error"]
        assert app.rows.items[len(ids)].text.startswith("new ")
    assert {caption(engine, i).state for i in ids} == {"accepted"}


@pytest.mark.sqlite_only  # fill_pending writes 100k rows with SQLite's own SQL
async def test_100k_pending_open_with_one_page_and_moving_on_reads_no_page(engine, monkeypatch) -> None:
    fill_pending(engine, 50_000)
    pages: list[int] = []
    page = queue.page

    def counted(session, filters, *, after_id=0, limit=PAGE_SIZE):
        pages.append(after_id)
        return page(session, filters, after_id=after_id, limit=limit)

    monkeypatch.setattr(queue, "page", counted)
    app, _ = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await until(pilot, lambda: "100,000 left" in app.screen_text())
        assert pages == [0] and len(app.rows.items) == app.table.row_count == PAGE_SIZE
        for _ in range(20):
            await pilot.press("s")
        await pilot.press("a")
        await settled(pilot)
        assert pages == [0] and app.table.row_count == PAGE_SIZE  # moving on never reloads the list
        assert app.current().id == 22
        await pilot.press("ctrl+end")
        await until(pilot, lambda: len(app.rows.items) == 2 * PAGE_SIZE)
        assert pages == [0, PAGE_SIZE]  # the next page, by key
    assert caption(engine, 21).state == "accepted"


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
async def test_small_and_large_terminals_show_the_queue_and_the_detail(engine, size) -> None:
    add_captions(engine, 2)
    app, _ = make_app(engine)
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        screen = app.screen_text()
        assert "alt text · caption 1" in screen and "model text" in screen and "reviewer alice" in screen


async def test_a_caption_deleted_meanwhile_is_reported_and_the_app_goes_on(engine) -> None:
    ids = add_captions(engine, 3)
    app, shown = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        with write_session(engine) as session:  # the image and its captions are removed meanwhile
            session.delete(session.get(Asset, caption(engine, ids[2]).asset_id))
        await pilot.press("s", "s")
        await until(pilot, lambda: any("deleted meanwhile" in message for _, message in shown))
        await pilot.press("a")
        await app.saved()
        await until(pilot, lambda: any("no longer exist" in message for _, message in shown))
        await pilot.press("s", "a")
        await settled(pilot)
        assert app.is_running
    assert caption(engine, ids[4]).state == "accepted"
