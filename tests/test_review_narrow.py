"""The review app at 80x24: nothing cut, help that says what happens, a labelled search and a
multi-line editor for descriptions (Enter saves, ctrl+j a new line)."""

from __future__ import annotations

import pytest

from catalogcap.review.screens import HelpScreen
from catalogcap.review.widgets import Prompt, short_name
from tests.factories import TEXTS, add_captions, caption, make_app, prompt_input, ready, settled

pytestmark = pytest.mark.asyncio
SMALL = (80, 24)
FOOTER = "a Accept e Edit r Reject u Undo ␣ Sel A Acc sel / Search f Filter ? Help q Quit"


def test_long_file_names_keep_their_start_and_extension() -> None:
    assert short_name("item-0000.jpg", 12) == "item-00….jpg"
    assert short_name("a.jpg", 12) == "a.jpg"
    assert short_name("x" * 40 + ".tiff", 12) == "xxxxxx….tiff"
    assert short_name("no-extension-at-all", 10) == "no-extens…"


async def test_every_column_and_every_key_fits_80_columns(engine) -> None:
    add_captions(engine, 4, text=lambda n, kind: TEXTS[n][kind != "alt_text"])
    app, _ = make_app(engine)
    async with app.run_test(size=SMALL) as pilot:
        await ready(pilot)
        lines = app.screen_text().splitlines()
        assert lines[-1] == FOOTER
        assert all(len(line) <= 80 for line in lines)
        assert lines[1].split()[:5] == ["id", "kind", "state", "text", "file"]
        assert "item-00….jpg" in lines[2] and "alt" in lines[2] and "pending" in lines[2]
        await pilot.resize_terminal(140, 30)  # wider: the roomy layout, whole names
        await pilot.pause()
        await until_text(pilot, "item-0000.jpg")
        await pilot.resize_terminal(*SMALL)
        await until_text(pilot, "item-00….jpg")
        assert app.screen_text().splitlines()[-1] == FOOTER


async def until_text(pilot, text: str) -> None:
    from tests.factories import until

    await until(pilot, lambda: text in pilot.app.screen_text())


async def test_help_says_what_enter_in_the_editor_does_and_it_does_that(engine) -> None:
    ids = add_captions(engine, 1)
    app, _ = make_app(engine)
    async with app.run_test(size=SMALL) as pilot:
        await ready(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        help_text = " ".join(app.screen_text().split())
        assert "the caption becomes edited" in help_text and "ctrl+j" in help_text
        assert "saves it as accepted" not in help_text
        await pilot.press("escape", "e")
        app.query_one(Prompt).value = "A red shirt, corrected"
        await pilot.press("enter")
        await settled(pilot)
    assert caption(engine, ids[0]).state == "edited"


async def test_the_search_prompt_is_labelled(engine) -> None:
    add_captions(engine, 2)
    app, _ = make_app(engine)
    async with app.run_test(size=SMALL) as pilot:
        await ready(pilot)
        assert "Search texts:" not in app.screen_text()
        await pilot.press("slash")
        assert "Search texts:" in app.screen_text()
        await pilot.press(*"number 1", "enter")
        await ready(pilot)
        assert "Search texts:" not in app.screen_text() and app.filters.search == "number 1"


async def test_descriptions_take_several_lines_alt_text_one(engine) -> None:
    ids = add_captions(engine, 1)  # ids[0] alt text, ids[1] description
    app, shown = make_app(engine)
    async with app.run_test(size=SMALL) as pilot:
        await ready(pilot)
        await pilot.press("e", "end", "ctrl+j")
        assert "\n" not in prompt_input(app).text
        assert any("Alt text is one line" in message for _, message in shown)
        await pilot.press("escape", "s", "e")
        assert app.query_one(Prompt).kind == "description"
        app.query_one(Prompt).value = "A red shirt."
        await pilot.press("ctrl+j", *"Cotton, size M.", "enter")
        await settled(pilot)
    assert caption(engine, ids[0]).state == "pending"
    saved = caption(engine, ids[1])
    assert (saved.state, saved.text) == ("edited", "A red shirt.\nCotton, size M.")


async def test_control_characters_and_markup_in_captions_are_shown_inert(engine) -> None:
    add_captions(engine, 1, text=lambda n, kind: "red \x1b]0;pwned\x07 [bold]shirt[/bold]\x1b[2J")
    app, _ = make_app(engine)
    async with app.run_test(size=(140, 30)) as pilot:
        await ready(pilot)
        screen = app.screen_text()
    assert "\x1b" not in screen and "\x07" not in screen
    assert "red \\x1b]0;pwned\\x07 [bold]shirt[/bold]\\x1b[2J" in screen  # the detail pane, whole
    assert "red \\x1b]0;pwned\\x07 [bold]sh…" in screen  # the queue cell, shortened
