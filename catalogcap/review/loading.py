"""How the review app reads the queue without ever waiting on the database.

Pages, counts, a caption's detail and its picture are read in worker threads and posted
back as messages. The first page and the count are read at once on opening; the next page
when the cursor nears the end of what is loaded; every few seconds the rows around the
cursor and the count are read again, so that what others decided shows, and captions the
daemon added since join the end of the queue.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from textual import work
from textual.worker import Worker, WorkerState, get_current_worker

from catalogcap.errors import NotFound
from catalogcap.review import queue
from catalogcap.review.messages import (
    Counted,
    DetailLoaded,
    PageLoaded,
    PreviewLoaded,
    Refreshed,
    while_running,
)
from catalogcap.review.preview import ImagePreview, PreviewLoader
from catalogcap.review.queue import PAGE_SIZE, Filters
from catalogcap.review.rows import Rows
from catalogcap.review.widgets import DetailPane
from catalogcap.store.database import read_session

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

PREFETCH = 50  # load the next page when the cursor is this close to the end
REFRESH_SECONDS = 5.0
DEBOUNCE_SECONDS = 0.03  # holding an arrow key does not read every caption it passes


class QueueLoading:
    """The reading half of `ReviewApp` (which supplies the widgets and the deciding half)."""

    engine: Engine
    rows: Rows
    previews: PreviewLoader
    detail: queue.Detail | None
    alt_text_limit: int
    generation: int
    _page_loading: bool
    _advance_pending: bool
    _writes: int
    table: Any
    filters: Filters

    def _reload(self, filters: Filters) -> None:
        self.generation += 1
        self.rows.reset(filters)
        self.detail, self._page_loading, self._advance_pending = None, False, False
        self.table.clear()
        self.query_one(DetailPane).show_empty("Loading…")
        self._more()
        self._count(self.generation, filters)
        self._status()

    def _more(self) -> None:
        if not self._page_loading:
            self._page_loading = True
            self._load_page(self.generation, self.filters, self.rows.last_id)

    @work(thread=True, group="page", exit_on_error=False)
    def _load_page(self, generation: int, filters: Filters, after_id: int) -> None:
        with read_session(self.engine) as session:
            items = queue.page(session, filters, after_id=after_id)
        self.post_message(PageLoaded(generation, items, len(items) < PAGE_SIZE))

    @work(thread=True, group="count", exclusive=True, exit_on_error=False)
    def _count(self, generation: int, filters: Filters) -> None:
        with read_session(self.engine) as session:
            n = queue.count(session, filters)
        self.post_message(Counted(generation, n))

    @while_running
    def on_page_loaded(self, message: PageLoaded) -> None:
        if message.generation != self.generation:
            return
        self._page_loading = False
        self.rows.exhausted = message.exhausted
        first = not self.rows.items
        new = self.rows.add(message.items)
        self.table.append(new, self.rows.selected)
        if first and new:
            self.table.move_cursor(row=0)
            self._load_detail(new[0].id)
        elif first:
            self.query_one(DetailPane).show_empty(
                "Nothing to review with these filters. Press f to change them, / to search, q to quit.")
        if self._advance_pending and new:
            self._advance_pending = False
            self._advance()

    @while_running
    def on_counted(self, message: Counted) -> None:
        if message.generation == self.generation and not self._writes:
            self.rows.left = message.count
            self._status()

    def on_data_table_row_highlighted(self) -> None:
        item = self.current()
        if item is None:
            return
        if self.detail is None or self.detail.id != item.id:
            # the pane keeps the previous caption until this one is read (a few ms): redrawing
            # it twice would cost more than the read; decisions act on the row, not the pane
            self.detail = None
            self._load_detail(item.id)
        if self.table.cursor_row >= len(self.rows.items) - PREFETCH and not self.rows.exhausted:
            self._more()

    @work(thread=True, group="detail", exclusive=True, exit_on_error=False)
    def _load_detail(self, caption_id: int) -> None:
        worker = get_current_worker()
        time.sleep(DEBOUNCE_SECONDS)
        if worker.is_cancelled:
            return
        with read_session(self.engine) as session:
            detail = queue.detail(session, caption_id)
        if worker.is_cancelled:
            return
        # one screen update when the picture is cached or missing; two when it must be decoded
        picture = self.previews.peek(detail.paths)
        self.post_message(DetailLoaded(detail, picture))
        if picture is None:
            picture = self.previews.load(detail.paths)
            if not worker.is_cancelled:
                self.post_message(PreviewLoaded(caption_id, picture))

    @while_running
    def on_detail_loaded(self, message: DetailLoaded) -> None:
        detail, item = message.detail, self.current()
        if item is None or item.id != detail.id:
            return
        self.detail = detail
        if item.id not in self.rows.saving and self.rows.update(
            detail.id, detail.state, detail.version, detail.text, detail.reviewer
        ):
            self._show_row(item)
        self.query_one(DetailPane).show(detail, self.alt_text_limit)
        if message.picture is not None:
            self.query_one(ImagePreview).show(message.picture)

    @while_running
    def on_preview_loaded(self, message: PreviewLoaded) -> None:
        item = self.current()
        if item is not None and item.id == message.caption_id:
            self.query_one(ImagePreview).show(message.picture)

    def _tick(self) -> None:
        """Re-read the rows around the cursor and the count; pick up newly arrived captions."""
        row = self.table.cursor_row
        near = self.rows.items[max(row - 10, 0) : row + 40]
        ids = [item.id for item in near if item.id not in self.rows.saving]
        self._refresh(self.generation, self.filters, ids)
        if self.rows.exhausted and row >= len(self.rows.items) - PREFETCH:
            self._more()

    @work(thread=True, group="refresh", exclusive=True, exit_on_error=False)
    def _refresh(self, generation: int, filters: Filters, ids: list[int]) -> None:
        with read_session(self.engine) as session:
            changes, n = queue.refresh(session, ids), queue.count(session, filters)
        self.post_message(Refreshed(generation, changes))
        self.post_message(Counted(generation, n))

    @while_running
    def on_refreshed(self, message: Refreshed) -> None:
        if message.generation != self.generation:
            return
        for caption_id, fields in message.changes.items():
            if caption_id not in self.rows.saving and (item := self.rows.update(caption_id, *fields)):
                self._show_row(item)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A read that failed (a caption deleted meanwhile, a database error) is told, not fatal."""
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            if event.worker.group == "page":
                self._page_loading = False
            if isinstance(error, NotFound):  # its image was deleted since the page was read
                self.notify("This caption was deleted meanwhile (its image was removed); s skips it.",
                            severity="warning")
                return
            log.error("review: %s failed: %s", event.worker.name, error)
            self.notify(f"Could not read from the database: {error}", severity="error", timeout=10)
