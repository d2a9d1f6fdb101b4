"""A text snapshot of the review app's main screen: queue, status, detail pane, keys.

When the layout changes on purpose, run this test, check the printed screen and paste it
over MAIN_SCREEN.
"""

from __future__ import annotations

import pytest

from tests.factories import TEXTS, add_captions, make_app, ready, settled

pytestmark = pytest.mark.asyncio


MAIN_SCREEN = """\
 reviewer alice · pending · all kinds · 7 left · 1 selected
 id        kind  state     text                            file           ▏ image not found:
   1       alt   accepted  Image of a red linen shirt ar…  item-0000.jpg  ▏ /catalog/images/item-0002.jpg
   2       desc  pending   A red linen shirt with white …  item-0000.jpg  ▏
 ● 3       alt   pending   Blue ceramic mug with a woode…  item-0001.jpg  ▏ alt text · caption 5 · pending
   4       desc  pending   A blue ceramic mug with a woo…  item-0001.jpg  ▏ model text  Green running shoe shoe
   5       alt   pending   Green running shoe shoe         item-0002.jpg  ▏ 23/125 characters
   6       desc  pending   A green running shoe with a w…  item-0002.jpg  ▏ ⚠ repeats itself
   7       alt   pending   Yellow baseball cap             item-0003.jpg  ▏
   8       desc  pending   A yellow cotton baseball cap …  item-0003.jpg  ▏ description (pending)  A green running shoe
                                                                          ▏ with a white sole on a grey floor.
                                                                          ▏
                                                                          ▏ file     /catalog/images/item-0002.jpg
                                                                          ▏ image    800×600 JPEG · 2.0 KiB
                                                                          ▏ model    blip-base
                                                                          ▏ adapter  none (base model)
                                                                          ▏ created  2026-03-02 09:30 UTC · version 1
                                                                          ▏
                                                                          ▏
                                                                          ▏
                                                                          ▏
                                                                          ▏
                                                                          ▏
                                                                          ▏
                                                                          ▏
                                                                          ▏
                                                                          ▏
                                                                          ▏
                                                                          ▏
a Accept e Edit r Reject u Undo ␣ Sel A Acc sel / Search f Filter ? Help q Quit"""


async def test_main_screen(engine) -> None:
    add_captions(engine, 4, text=lambda n, kind: TEXTS[n][kind != "alt_text"])
    app, _ = make_app(engine)
    async with app.run_test(size=(120, 30)) as pilot:
        await ready(pilot)
        await pilot.press("a", "down", "space", "down")  # accept 1, select 3, look at 5
        await settled(pilot)
        screen = app.screen_text()
    assert screen == MAIN_SCREEN, "the main screen changed; if on purpose, paste this:\n" + screen
