"""`catalogcap review`: accept, edit and reject captions from the keyboard.

The app never waits on the database: the queue is read in worker threads (`loading`), and
decisions are written, in the order the keys were pressed, by the writer thread (each its
own short transaction, so a crash loses nothing already decided). Moving on only moves
the cursor.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import ClassVar

from rich.console import Console
from sqlalchemy.engine import Engine
from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Input, Static

from catalogcap import images
from catalogcap.review import queue
from catalogcap.review.loading import REFRESH_SECONDS, QueueLoading
from catalogcap.review.messages import WriteFailed, Written, while_running
from catalogcap.review.preview import PreviewLoader
from catalogcap.review.queue import Filters, QueueItem
from catalogcap.review.rows import Rows
from catalogcap.review.screens import FilterScreen, HelpScreen
from catalogcap.review.widgets import DetailPane, Prompt, QueueTable, SearchBar
from catalogcap.review.writer import Writer


class ReviewApp(QueueLoading, App[None]):
    CSS_PATH = "review.tcss"
    TITLE = "catalogcap review"
    ENABLE_COMMAND_PALETTE = False
    # Short labels in a compact footer, so every key shown fits one line of an 80-column terminal;
    # s (skip) does what the down arrow does and is listed in the help (?) instead
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "accept", "Accept"),
        Binding("e", "edit", "Edit"),
        Binding("r", "reject", "Reject"),
        Binding("s", "skip", "Skip", show=False),
        Binding("u", "undo", "Undo"),
        Binding("space", "select", "Sel", key_display="␣"),
        Binding("A", "accept_selected", "Acc sel"),
        Binding("slash", "search", "Search"),
        Binding("f", "filters", "Filter"),
        Binding("w", "warnings", "Warnings", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, engine: Engine, *, reviewer: str, filters: Filters | None = None,
                 alt_text_limit: int = 125, max_pixels: int = images.DEFAULT_MAX_PIXELS,
                 max_bytes: int = images.DEFAULT_MAX_BYTES,
                 on_reviewed: Callable[[list[int], str], None] | None = None) -> None:
        super().__init__()
        self.engine = engine
        self.reviewer = reviewer
        self.alt_text_limit = alt_text_limit
        self.rows = Rows(filters or Filters(), reviewer)
        self.previews = PreviewLoader(max_pixels=max_pixels, max_bytes=max_bytes)
        self.writer = Writer(engine, reviewer, self.post_message, on_reviewed, alt_text_limit=alt_text_limit)
        self.detail: queue.Detail | None = None
        self.generation = 0  # bumped on every filter change; older pages and counts are dropped
        self._page_loading = False
        self._advance_pending = False
        self._writes = 0

    @property
    def filters(self) -> Filters:
        return self.rows.filters

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Static("", id="status")
        with Horizontal(id="body"):
            with Vertical(id="queue-panel"):
                yield SearchBar(id="search-bar")
                yield QueueTable(id="queue")
            yield DetailPane(id="detail")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.table.focus()
        self._reload(self.filters)
        self.set_interval(REFRESH_SECONDS, self._tick)

    def on_resize(self, event: events.Resize) -> None:
        for table in self.query(QueueTable):  # none yet while the app starts
            if table.columns:
                table.fit(event.size.width, self.rows.items, self.rows.selected, self.rows.saving)

    async def on_unmount(self) -> None:
        await asyncio.to_thread(self.writer.close)

    @property
    def table(self) -> QueueTable:
        return self.query_one(QueueTable)

    def current(self) -> QueueItem | None:
        return self.rows.at(self.table.cursor_row)

    def screen_text(self) -> str:
        """The screen as plain text, e.g. for a note or a snapshot test."""
        width, height = self.size
        console = Console(width=width, height=height, file=io.StringIO(), record=True, force_terminal=True,
                          color_system=None, legacy_windows=False, safe_box=False)
        # What export_screenshot renders, exported as text instead of SVG.
        console.print(self.screen._compositor.render_update(full=True, screen_stack=self._background_screens))
        return "\n".join(line.rstrip() for line in console.export_text().splitlines())

    def _status(self) -> None:
        parts = [f"reviewer {self.reviewer}", self.filters.describe()]
        if self.rows.left is not None:
            noun = "left" if self.filters.state == "pending" else "captions"
            parts.append(f"{self.rows.left:,} {noun}")
        if self.rows.selected:
            parts.append(f"{len(self.rows.selected)} selected")
        if self._writes:
            parts.append("saving…")
        self.query_one("#status", Static).update(" · ".join(parts), layout=False)  # always one line

    def _show_row(self, item: QueueItem) -> None:
        self.table.show(item, selected=item.id in self.rows.selected, saving=item.id in self.rows.saving)
        if self.current() is item and (self.detail is None or self.detail.version < item.version):
            self._load_detail(item.id)

    # ------------------------------------------------------------------ moving

    def _advance(self) -> None:
        following = self.rows.next_row(self.table.cursor_row)
        if following is not None:
            self.table.move_cursor(row=following)
        elif not self.rows.exhausted:
            self._advance_pending = True
            self._more()
        else:
            self.notify("That was the last caption in this queue.", timeout=3)

    def action_skip(self) -> None:
        self._advance()

    def action_select(self) -> None:
        item = self.current()
        if item is not None:
            self.rows.toggle(item)
            self._show_row(item)
            self.table.action_cursor_down()
            self._status()

    # ------------------------------------------------------------------ deciding

    def _decidable(self, item: QueueItem | None) -> bool:
        if item is None:
            return False
        if self.rows.taken(item):
            self.notify(f"Caption {item.id} was already {item.state} by {item.reviewer}; left as it is.",
                        severity="warning")
            return False
        if item.id in self.rows.saving:
            self.notify(f"Caption {item.id} is still being saved.", timeout=2)
            return False
        return True

    def action_accept(self) -> None:
        item = self.current()
        if self._decidable(item):
            self._submit("accept", [item])
            self._advance()

    def action_accept_selected(self) -> None:
        chosen = [item for item in self.rows.items if item.id in self.rows.selected]
        if not chosen:
            self.notify("Nothing selected: press space on captions first, then A.", timeout=3)
            return
        self.rows.selected.clear()
        for item in chosen:
            self._show_row(item)
        chosen = [item for item in chosen if self._decidable(item)]
        if chosen:
            self._submit("accept", chosen)
        self._status()

    def action_edit(self) -> None:
        item = self.current()
        if self._decidable(item):
            text = self.detail.text if self.detail and self.detail.id == item.id else item.text
            self.query_one(Prompt).open("edit", text, kind=item.kind, alt_text_limit=self.alt_text_limit,
                                        context=item.id)

    def action_reject(self) -> None:
        item = self.current()
        if self._decidable(item):
            self.query_one(Prompt).open("reject", "", kind=item.kind, alt_text_limit=self.alt_text_limit,
                                        context=item.id)

    def on_prompt_submitted(self, message: Prompt.Submitted) -> None:
        self.table.focus()
        item = self.rows.get(message.context)
        if item is None:
            return
        if message.mode == "edit":
            self._submit("edit", [item], text=message.value)
        else:
            self._submit("reject", [item], reason=message.value or None)
        if self.current() is item:
            self._advance()

    def on_prompt_cancelled(self) -> None:
        self.table.focus()

    def action_undo(self) -> None:
        self._writes += 1
        self._status()
        self.writer.undo()

    def _submit(self, decision: str, items: list[QueueItem], *, text: str | None = None,
                reason: str | None = None) -> None:
        self.rows.saving.update(item.id for item in items)
        for item in items:
            self._show_row(item)
        self._writes += 1
        self._status()
        self.writer.decide([(item.id, item.version) for item in items], decision, text=text, reason=reason)

    async def saved(self) -> None:
        """Wait until every decision made so far is written."""
        await self.writer.flush()

    def _settle(self, ids: list[int], changed: list[int] | None = None) -> None:
        self._writes -= 1
        self.rows.saving.difference_update(ids)
        for caption_id in dict.fromkeys([*ids, *(changed or [])]):
            if (item := self.rows.get(caption_id)) is not None:
                self._show_row(item)
        self._status()

    @while_running
    def on_written(self, message: Written) -> None:
        outcome = message.outcome
        if outcome is None:
            self.notify("Nothing to undo.", timeout=2)
            self._settle(message.ids)
            return
        for saved in outcome.saved:
            self.rows.update(saved.id, saved.state, saved.version, saved.text, saved.reviewer)
        for saved, why in outcome.conflicts:
            self.rows.update(saved.id, saved.state, saved.version, saved.text, saved.reviewer)
            self.notify(why, title="Someone else decided first", severity="warning", timeout=8)
        if outcome.missing:
            gone = ", ".join(map(str, outcome.missing))
            self.notify(f"Caption(s) {gone} no longer exist.", severity="warning")
        self._settle(message.ids, [s.id for s in outcome.saved] + [s.id for s, _ in outcome.conflicts])
        if outcome.decision.startswith("undo") and outcome.saved:
            self._undone(outcome.decision.removeprefix("undo "), [s.id for s in outcome.saved])
        elif len(outcome.saved) > 1:
            self.notify(f"{outcome.decision.capitalize()}ed {len(outcome.saved)} captions.", timeout=3)

    def _undone(self, decision: str, ids: list[int]) -> None:
        if ids[0] in self.rows.index:
            self.table.move_cursor(row=self.rows.index[ids[0]])
        what = f"caption {ids[0]}" if len(ids) == 1 else f"{len(ids)} captions"
        self.notify(f"Undid {decision} of {what}.", timeout=3)

    @while_running
    def on_write_failed(self, message: WriteFailed) -> None:
        self._settle(message.ids)
        self.notify(f"Not saved, nothing changed: {message.error}. Try again.", title="Database error",
                    severity="error", timeout=15)

    # ------------------------------------------------------------------ filters, help, quit

    def action_search(self) -> None:
        self.query_one(SearchBar).open(self.filters.search or "")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "search":
            self.query_one(SearchBar).close()
            self._set_filters(self.filters.with_(search=event.value.strip() or None))

    def action_filters(self) -> None:
        self.push_screen(FilterScreen(self.filters), self._set_filters)

    def action_warnings(self) -> None:
        self._set_filters(self.filters.with_(warnings=not self.filters.warnings))

    def _set_filters(self, filters: Filters | None) -> None:
        if filters is not None and filters != self.filters:
            self._reload(filters)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        self.query_one("#status", Static).update("saving the last decisions…")
        await self.saved()
        self.exit()
