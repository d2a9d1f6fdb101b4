"""The review app's widgets: the queue table, the detail pane and the inline editor."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Input, Static

from catalogcap.captioner.text import alt_text_warnings
from catalogcap.review.preview import ImagePreview
from catalogcap.review.queue import Detail, QueueItem
from catalogcap.store.captions import length_problem, text_limit

KIND_LABELS = {"alt_text": "alt", "description": "desc"}
STATE_STYLES = {"pending": "", "accepted": "green", "edited": "cyan", "rejected": "red", "saving…": "yellow"}
TEXT_WIDTH = 30


def warnings_for(text: str, kind: str, alt_text_limit: int) -> list[str]:
    return alt_text_warnings(text, limit=text_limit(kind, alt_text_limit))


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class SearchInput(Input):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Cancel", show=False)]

    def action_close(self) -> None:
        self.remove_class("open")
        self.app.query_one(QueueTable).focus()


class QueueTable(DataTable):
    """The captions of the queue, one row each, keyed by caption id; rows are appended a page
    at a time and updated in place, never reloaded while the reviewer moves."""

    COLUMNS: ClassVar[dict[str, int]] = {"id": 8, "kind": 4, "state": 8, "text": TEXT_WIDTH, "file": 14}

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for name, width in self.COLUMNS.items():
            self.add_column(name, key=name, width=width)

    def append(self, items: list[QueueItem], selected: set[int]) -> None:
        for item in items:
            self.add_row(*self._cells(item, item.id in selected, saving=False), key=str(item.id))

    def show(self, item: QueueItem, *, selected: bool, saving: bool) -> None:
        for name, value in zip(self.COLUMNS, self._cells(item, selected, saving), strict=True):
            self.update_cell(str(item.id), name, value)

    @staticmethod
    def _cells(item: QueueItem, selected: bool, saving: bool) -> list[Any]:
        state = "saving…" if saving else item.state
        marker = Text.assemble(("● " if selected else "  ", "bold magenta"), str(item.id))
        return [
            marker,
            KIND_LABELS.get(item.kind, item.kind),
            Text(state, style=STATE_STYLES.get(state, "")),
            _short(item.text, TEXT_WIDTH),
            _short(Path(item.path).name, 14) if item.path else "?",
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
        out.append(f" by {d.reviewer}" + (f" {d.reviewed_at:%Y-%m-%d %H:%M}" if d.reviewed_at else ""))
    if d.reject_reason:
        out.append(f" ({d.reject_reason})", style="red")
    out.append("\nmodel text  ", style="dim")
    out.append(d.model_text)
    if d.text != d.model_text:
        out.append("\nfinal text  ", style="dim")
        out.append(d.text, style="cyan")
    out.append(f"\n{len(d.text)}/{limit} characters", style="dim" if len(d.text) <= limit else "bold red")
    for warning in warnings_for(d.text, d.kind, alt_text_limit):
        out.append(f"\n⚠ {warning}", style="yellow")
    for sibling in d.siblings:
        out.append(f"\n\n{sibling.kind.replace('_', ' ')} ({sibling.state})  ", style="dim")
        out.append(sibling.text)
    return out


def render_facts(d: Detail) -> Text:
    out = Text()
    path = d.path or "(no path recorded)"
    out.append("file     ", style="dim")
    out.append(path + ("  (missing)" if d.all_missing else ""))
    for other in d.paths[1:]:
        out.append(f"\n         {other}")
    size = f"{d.width}×{d.height}" if d.width and d.height else "size unknown"
    weight = f" · {_bytes(d.size)}" if d.size else ""
    out.append(f"\nimage    {size} {d.format or ''}{weight}".rstrip())
    out.append(f"\nmodel    {d.model}\nadapter  {d.adapter or 'none (base model)'}")
    out.append(f"\ncreated  {d.created_at:%Y-%m-%d %H:%M} UTC · version {d.version}")
    return out


def _bytes(n: int) -> str:
    if n < 1024:
        return f"{n:,} bytes"
    return f"{n / 1024:.1f} KiB" if n < 2**20 else f"{n / 2**20:.1f} MiB"


class Prompt(Vertical):
    """The inline editor under the texts: a correction with a live count and warnings, or
    a reject reason. Enter submits, Escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", show=False)]

    class Submitted(Message):
        def __init__(self, mode: str, value: str, context: Any) -> None:
            super().__init__()
            self.mode, self.value, self.context = mode, value, context

    class Cancelled(Message):
        pass

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = ""
        self.kind = "alt_text"
        self.alt_text_limit = 125
        self.context: Any = None

    def compose(self) -> ComposeResult:
        yield Static("", id="prompt-title")
        yield Input(id="prompt-input", select_on_focus=False)
        yield Static("", id="prompt-help")

    def open(self, mode: str, value: str, *, kind: str, alt_text_limit: int, context: Any) -> None:
        self.mode, self.kind, self.alt_text_limit, self.context = mode, kind, alt_text_limit, context
        title = (f"Edit the {kind.replace('_', ' ')} · Enter saves · Escape cancels" if mode == "edit"
                 else "Reason for rejecting (optional) · Enter rejects · Escape cancels")
        self.query_one("#prompt-title", Static).update(Text(title, style="bold"))
        field = self.query_one("#prompt-input", Input)
        field.value = value
        field.cursor_position = len(value)
        self.add_class("open")
        self._describe(value)
        field.focus()

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

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._describe(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        problem = self.problem(event.value)
        if problem:
            self.app.notify(problem, severity="warning")
            return
        mode, context = self.mode, self.context
        self.close()
        self.post_message(self.Submitted(mode, event.value.strip(), context))

    def action_cancel(self) -> None:
        self.close()
        self.post_message(self.Cancelled())
