"""The review app's pop-up screens: key help and the filter form."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from catalogcap.review.queue import NO_ADAPTER, Filters
from catalogcap.store.models import CAPTION_STATES, KINDS

KEYS = (
    ("a", "accept the caption as it is"),
    ("e", "edit: fix the text and press Enter to save it; the caption becomes edited (the model's text is"
          " kept beside it; saving it unchanged counts as accepted). Descriptions take several lines:"
          " ctrl+j (or shift+enter) starts a new line. Escape cancels"),
    ("r", "reject, with an optional reason"),
    ("s", "skip to the next caption without deciding"),
    ("u", "undo the last decision (a whole bulk accept at once)"),
    ("space (␣)", "select or unselect the caption and move down"),
    ("A", "accept every selected caption"),
    ("/", "search the texts: type words, Enter applies, Escape cancels (an empty search clears it)"),
    ("f", "filters: state, kind, folder, model, adapter, only captions with warnings"),
    ("w", "only captions with warnings (a product mismatch, a missing brand...), or all again"),
    ("↑ ↓ PgUp PgDn", "move through the queue (ctrl+home, ctrl+end: first, last loaded)"),
    ("?", "this help"),
    ("q", "quit (waits until every decision is saved)"),
)
ANY = "*"


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        table = Table(show_header=False, box=None, padding=(0, 2))
        table.add_column(style="bold magenta", no_wrap=True)
        table.add_column()
        for key, what in KEYS:
            table.add_row(key, what)
        with Vertical(id="help"):
            yield Static("catalogcap review: keys", classes="title")
            yield Static(table)
            yield Static("Every decision is saved the moment it is made. Escape closes this.", classes="hint")

    def on_click(self) -> None:
        self.dismiss()


class FilterScreen(ModalScreen[Filters | None]):
    """Edit the filters; Enter or Apply returns the new ones, Escape keeps the old."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, filters: Filters) -> None:
        super().__init__()
        self.filters = filters

    def compose(self) -> ComposeResult:
        f = self.filters
        with VerticalScroll(id="filters"):  # scrolls on a small terminal (80x24)
            yield Static("Filters", classes="title")
            yield Label("state")
            yield Select([(s, s) for s in CAPTION_STATES] + [("any", ANY)], value=f.state or ANY,
                         allow_blank=False, id="f-state")
            yield Label("kind")
            yield Select([(k, k) for k in KINDS] + [("any", ANY)], value=f.kind or ANY, allow_blank=False,
                         id="f-kind")
            yield Label("folder (captions of images under it)")
            yield Input(f.folder or "", placeholder="/path/to/images", id="f-folder")
            yield Label("model (part of its id)")
            yield Input(f.model or "", placeholder="any model", id="f-model")
            yield Label(f'adapter ("{NO_ADAPTER}" for the base model)')
            yield Input(f.adapter or "", placeholder="any adapter", id="f-adapter")
            yield Label("text contains")
            yield Input(f.search or "", placeholder="anything", id="f-search")
            with Horizontal(classes="buttons"):
                yield Button("Apply", variant="primary", id="apply")
                yield Button("Cancel", id="cancel")
                yield Checkbox("only with warnings", f.warnings, id="f-warnings")

    def _result(self) -> Filters:
        def value(name: str) -> str | None:
            return self.query_one(f"#f-{name}", Input).value.strip() or None

        state = self.query_one("#f-state", Select).value
        kind = self.query_one("#f-kind", Select).value
        return Filters(state=None if state == ANY else str(state), kind=None if kind == ANY else str(kind),
                       folder=value("folder"), model=value("model"), adapter=value("adapter"),
                       search=value("search"), warnings=self.query_one("#f-warnings", Checkbox).value)

    def on_input_submitted(self) -> None:
        self.dismiss(self._result())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self._result() if event.button.id == "apply" else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
