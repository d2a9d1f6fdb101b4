"""The review app's widgets: the search bar, the queue table, the detail pane and the inline editor."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Input, Label, Static, TextArea

from catalogcap.captioner.text import alt_text_warnings
from catalogcap.review.preview import ImagePreview
from catalogcap.review.queue import Detail, QueueItem
from catalogcap.store.captions import length_problem, text_limit
from catalogcap.terminal import printable

KIND_LABELS = {"alt_text": "alt", "description": "desc"}
STATE_STYLES = {"pending": "", "accepted": "green", "edited": "cyan", "rejected": "red", "saving…": "yellow"}
TEXT_WIDTH = 30
WIDE_COLUMNS = {"id": 8, "kind": 4, "state": 8, "text": TEXT_WIDTH, "file": 14}
WIDE_FROM = 110  # terminal columns from which the queue table has room for the wide layout
DETAIL_MIN = 31  # the detail pane's min-width plus its border (review.tcss)


LIVE_CODES = {"too_long", "empty", "filler_opening", "artefact", "repeats"}  # warnings_for says these


def warnings_for(text: str, kind: str, alt_text_limit: int) -> list[str]:
    return alt_text_warnings(text, limit=text_limit(kind, alt_text_limit))


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def short_name(name: str, width: int) -> str:
    """A file name in `width` columns: the start of its stem, an ellipsis, and its extension."""
    if len(name) <= width:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot or len(suffix) + 3 > width:
        return _short(name, width)
    return stem[: width - len(suffix) - 2] + "…." + suffix


def columns_for(width: int) -> tuple[dict[str, int], int]:
    """Column widths of the queue table and its cell padding for a terminal `width` columns wide.

    From WIDE_FROM on, the roomy layout; below it every column but the text keeps its
    width (plus one column of gap, as the padding goes) and the text takes what is left
    beside the detail pane, so at 80 columns the file name is still there, shortened."""
    if width >= WIDE_FROM:
        return dict(WIDE_COLUMNS), 1
    room = min(int(width * 0.64), width - DETAIL_MIN) - 2  # the queue panel's max-width, less the scrollbar
    fixed = {"id": 7, "kind": 5, "state": 9, "file": 13}
    text = max(room - sum(fixed.values()), 8)
    return {"id": fixed["id"], "kind": fixed["kind"], "state": fixed["state"], "text": text, "file": fixed["file"]}, 0


class SearchInput(Input):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Cancel", show=False)]

    def action_close(self) -> None:
        self.app.query_one(SearchBar).close()


class SearchBar(Horizontal):
    """The labelled search prompt above the queue (opened with /)."""

    def compose(self) -> ComposeResult:
        yield Label("Search texts:", id="search-label")
        yield SearchInput(placeholder="words · Enter applies · Esc cancels", id="search")

    def open(self, value: str) -> None:
        field = self.query_one(SearchInput)
        field.value = value
        self.add_class("open")
        field.focus()

    def close(self) -> None:
        self.remove_class("open")
        self.app.query_one(QueueTable).focus()


class QueueTable(DataTable):
    """The captions of the queue, one row each, keyed by caption id; rows are appended a page
    at a time and updated in place, never reloaded while the reviewer moves."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.widths, self.gap = dict(WIDE_COLUMNS), 0

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self._add_columns(self.app.size.width)

    def _add_columns(self, width: int) -> None:
        self.widths, self.cell_padding = columns_for(width)
        self.gap = 0 if self.cell_padding else 1  # without padding, each cell keeps one column free
        for name, column_width in self.widths.items():
            self.add_column(name, key=name, width=column_width)

    def fit(self, width: int, items: list[QueueItem], selected: set[int], saving: set[int]) -> None:
        """Lay the columns out again for a terminal now `width` columns wide (rows kept, cursor too)."""
        if columns_for(width) == (self.widths, self.cell_padding):
            return
        row = self.cursor_row
        self.clear(columns=True)
        self._add_columns(width)
        for item in items:
            self.add_row(*self._cells(item, item.id in selected, item.id in saving), key=str(item.id))
        if items:
            self.move_cursor(row=min(row, len(items) - 1))

    def append(self, items: list[QueueItem], selected: set[int]) -> None:
        for item in items:
            self.add_row(*self._cells(item, item.id in selected, saving=False), key=str(item.id))

    def show(self, item: QueueItem, *, selected: bool, saving: bool) -> None:
        for name, value in zip(self.widths, self._cells(item, selected, saving), strict=True):
            self.update_cell(str(item.id), name, value)

    def _cells(self, item: QueueItem, selected: bool, saving: bool) -> list[Any]:
        state = "saving…" if saving else item.state
        marker = Text.assemble(("● " if selected else "  ", "bold magenta"), str(item.id))
        return [
            marker,
            KIND_LABELS.get(item.kind, item.kind),
            Text(state, style=STATE_STYLES.get(state, "")),
            # Text, not str: a DataTable reads a str as markup, and "[...]" in a caption is no markup
            Text(_short(printable(" ".join(item.text.split())), self.widths["text"] - self.gap)),
            Text(short_name(printable(Path(item.path).name), self.widths["file"] - self.gap) if item.path else "?"),
        ]


class DetailPane(VerticalScroll):
    """The caption under the cursor: its image, both texts, the other kind, the facts."""

    def compose(self) -> ComposeResult:
        yield ImagePreview(id="preview")
        yield Static("", id="texts")
        yield Prompt(id="prompt")
        yield Static("", id="facts")

    def show_empty(self, message: str) -> None:
        self.query_one(ImagePreview).show("")
        self.query_one("#texts", Static).update(Text(message, style="bold"))
        self.query_one("#facts", Static).update("")

    def show(self, detail: Detail, alt_text_limit: int) -> None:
        self.query_one("#texts", Static).update(render_texts(detail, alt_text_limit))
        self.query_one("#facts", Static).update(render_facts(detail))


def render_texts(d: Detail, alt_text_limit: int) -> Text:
    limit = text_limit(d.kind, alt_text_limit)
    out = Text()
    out.append(f"{d.kind.replace('_', ' ')} · caption {d.id} · ", style="bold")
    out.append(d.state, style=f"bold {STATE_STYLES.get(d.state, '')}")
    if d.reviewer and d.state != "pending":
        out.append(f" by {printable(d.reviewer)}" + (f" {d.reviewed_at:%Y-%m-%d %H:%M}" if d.reviewed_at else ""))
    if d.reject_reason:
        out.append(f" ({printable(d.reject_reason)})", style="red")
    out.append("\nmodel text  ", style="dim")
    out.append(printable(d.model_text, newlines=True))
    if d.text != d.model_text:
        out.append("\nfinal text  ", style="dim")
        out.append(printable(d.text, newlines=True), style="cyan")
    out.append(f"\n{len(d.text)}/{limit} characters", style="dim" if len(d.text) <= limit else "bold red")
    for warning in warnings_for(d.text, d.kind, alt_text_limit):
        out.append(f"\n⚠ {warning}", style="yellow")
    for warning in d.warnings:  # what the text rules above do not say again: the product checks
        if warning.get("code") not in LIVE_CODES:
            out.append(f"\n⚠ {printable(str(warning.get('message') or warning.get('code')))}", style="yellow")
    if d.source:
        out.append(f"\nhuman text from {printable(d.source)}", style="dim")
    for sibling in d.siblings:
        out.append(f"\n\n{sibling.kind.replace('_', ' ')} ({sibling.state})  ", style="dim")
        out.append(printable(sibling.text, newlines=True))
    return out


def render_facts(d: Detail) -> Text:
    out = Text()
    path = d.path or "(no path recorded)"
    out.append("file     ", style="dim")
    out.append(printable(path) + ("  (missing)" if d.all_missing else ""))
    for other in d.paths[1:]:
        out.append(f"\n         {printable(other)}")
    size = f"{d.width}×{d.height}" if d.width and d.height else "size unknown"
    weight = f" · {_bytes(d.size)}" if d.size else ""
    out.append(f"\nimage    {size} {d.format or ''}{weight}".rstrip())
    if d.context:
        out.append("\nproduct  " + printable(", ".join(f"{k}={v}" for k, v in d.context.items())))
    out.append(f"\nmodel    {d.model}\nadapter  {d.adapter or 'none (base model)'}")
    out.append(f"\ncreated  {d.created_at:%Y-%m-%d %H:%M} UTC · version {d.version}")
    return out


def _bytes(n: int) -> str:
    if n < 1024:
        return f"{n:,} bytes"
    return f"{n / 1024:.1f} KiB" if n < 2**20 else f"{n / 2**20:.1f} MiB"


class Editor(TextArea):
    """The editor's text field: Enter saves; in a description ctrl+j (or shift+enter, where the
    terminal tells it apart) starts a new line; alt text stays one line."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "submit", "Save", priority=True),
        Binding("ctrl+j,shift+enter", "newline", "New line", priority=True),
    ]

    multiline = False

    def action_submit(self) -> None:
        self.post_message(Prompt.Save())

    def action_newline(self) -> None:
        if self.multiline:
            self.insert("\n")
        else:
            self.app.notify("Alt text is one line; only descriptions take line breaks.", timeout=3)


class Prompt(Vertical):
    """The inline editor under the texts: a correction with a live count and warnings, or
    a reject reason. Enter submits, Escape cancels; descriptions are edited over several lines."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    class Submitted(Message):
        def __init__(self, mode: str, value: str, context: Any) -> None:
            super().__init__()
            self.mode, self.value, self.context = mode, value, context

    class Cancelled(Message):
        pass

    class Save(Message):
        """Enter in the editor."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = ""
        self.kind = "alt_text"
        self.alt_text_limit = 125
        self.context: Any = None

    def compose(self) -> ComposeResult:
        yield Static("", id="prompt-title")
        yield Editor(id="prompt-input", soft_wrap=True, compact=True, highlight_cursor_line=False)
        yield Static("", id="prompt-help")

    @property
    def editor(self) -> Editor:
        return self.query_one(Editor)

    @property
    def value(self) -> str:
        return self.editor.text

    @value.setter
    def value(self, text: str) -> None:
        self.editor.load_text(text)
        self.editor.move_cursor(self.editor.document.end)

    def open(self, mode: str, value: str, *, kind: str, alt_text_limit: int, context: Any) -> None:
        self.mode, self.kind, self.alt_text_limit, self.context = mode, kind, alt_text_limit, context
        multiline = mode == "edit" and kind == "description"
        if mode == "edit":
            title = (f"Edit the {kind.replace('_', ' ')} · Enter saves"
                     + (" · ctrl+j new line" if multiline else "") + " · Esc cancels")
        else:
            title = "Reason for rejecting (optional) · Enter rejects · Esc cancels"
        self.query_one("#prompt-title", Static).update(Text(title, style="bold"))
        editor = self.editor
        editor.multiline = multiline
        editor.set_class(multiline, "-multiline")
        self.value = value
        self.add_class("open")
        self._describe(value)
        editor.focus()
        self.call_after_refresh(self.scroll_visible)

    def close(self) -> None:
        self.remove_class("open")
        self.mode = ""

    @property
    def is_open(self) -> bool:
        return self.has_class("open")

    def problem(self, value: str) -> str | None:
        """Why `value` cannot be saved as it is, or None."""
        if self.mode != "edit":
            return None
        if not value.strip():
            return "The text is empty: type the correction, or press Escape and reject the caption (r)."
        problem = length_problem(self.kind, value.strip(), self.alt_text_limit)
        return f"The {problem} to save." if problem else None

    def _describe(self, value: str) -> None:
        help_text = Text()
        if self.mode == "edit":
            limit = text_limit(self.kind, self.alt_text_limit)
            n = len(value.strip())
            help_text.append(f"{n}/{limit} characters", style="bold red" if n > limit else "dim")
            for warning in warnings_for(value, self.kind, self.alt_text_limit):
                help_text.append(f"\n⚠ {warning}", style="yellow")
        self.query_one("#prompt-help", Static).update(help_text)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        event.stop()
        self._describe(event.text_area.text)

    def on_prompt_save(self, event: Save) -> None:
        event.stop()
        value = self.value
        problem = self.problem(value)
        if problem:
            self.app.notify(problem, severity="warning")
            return
        mode, context = self.mode, self.context
        self.close()
        self.post_message(self.Submitted(mode, value.strip(), context))

    def action_cancel(self) -> None:
        self.close()
        self.post_message(self.Cancelled())
