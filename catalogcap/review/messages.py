"""Messages the review app's worker and writer threads post back to it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from PIL import Image as PILImage
from textual.message import Message

from catalogcap.review.decisions import Outcome
from catalogcap.review.queue import Detail, QueueItem

M = TypeVar("M")


def while_running(handler: Callable[[Any, M], None]) -> Callable[[Any, M], None]:
    """For results posted by threads: one may arrive while the app shuts down, with nothing
    left to show it on."""

    @functools.wraps(handler)
    def guarded(self: Any, message: M) -> None:
        if self.is_running:
            handler(self, message)

    return guarded


class PageLoaded(Message):
    def __init__(self, generation: int, items: list[QueueItem], exhausted: bool) -> None:
        super().__init__()
        self.generation, self.items, self.exhausted = generation, items, exhausted


class Counted(Message):
    def __init__(self, generation: int, count: int) -> None:
        super().__init__()
        self.generation, self.count = generation, count


class DetailLoaded(Message):
    """A caption's detail, with its picture when that was at hand without decoding."""

    def __init__(self, detail: Detail, picture: PILImage.Image | str | None) -> None:
        super().__init__()
        self.detail, self.picture = detail, picture


class PreviewLoaded(Message):
    """The picture for a caption, or a sentence saying why there is none."""

    def __init__(self, caption_id: int, picture: PILImage.Image | str) -> None:
        super().__init__()
        self.caption_id, self.picture = caption_id, picture


class Refreshed(Message):
    def __init__(self, generation: int, changes: dict[int, tuple[str, int, str, str | None]]) -> None:
        super().__init__()
        self.generation, self.changes = generation, changes


class Written(Message):
    """A decision or undo was saved (outcome None: there was nothing to undo)."""

    def __init__(self, outcome: Outcome | None, ids: list[int]) -> None:
        super().__init__()
        self.outcome, self.ids = outcome, ids


class WriteFailed(Message):
    def __init__(self, ids: list[int], error: str) -> None:
        super().__init__()
        self.ids, self.error = ids, error
