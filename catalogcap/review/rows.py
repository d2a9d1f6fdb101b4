"""The captions the review app has loaded, in queue order, with the reviewer's marks.

Plain bookkeeping with no UI and no database: which rows are selected or being saved,
which one comes next, and how many are left as decisions and refreshes come in.
"""

from __future__ import annotations

from catalogcap.review.queue import Filters, QueueItem


class Rows:
    def __init__(self, filters: Filters, reviewer: str) -> None:
        self.reviewer = reviewer
        self.reset(filters)

    def reset(self, filters: Filters) -> None:
        self.filters = filters
        self.items: list[QueueItem] = []
        self.index: dict[int, int] = {}
        self.selected: set[int] = set()
        self.saving: set[int] = set()
        self.left: int | None = None
        self.exhausted = False

    @property
    def last_id(self) -> int:
        return self.items[-1].id if self.items else 0

    def add(self, items: list[QueueItem]) -> list[QueueItem]:
        """Append a page; returns the items that were not loaded already."""
        new = [item for item in items if item.id not in self.index]
        for item in new:
            self.index[item.id] = len(self.items)
            self.items.append(item)
        return new

    def at(self, row: int) -> QueueItem | None:
        return self.items[row] if 0 <= row < len(self.items) else None

    def get(self, caption_id: int) -> QueueItem | None:
        row = self.index.get(caption_id)
        return None if row is None else self.items[row]

    def reviewable(self, item: QueueItem) -> bool:
        """Still waiting for this reviewer: not being saved, and still in the filtered state."""
        return item.id not in self.saving and (self.filters.state is None or item.state == self.filters.state)

    def next_row(self, row: int) -> int | None:
        return next((i for i in range(row + 1, len(self.items)) if self.reviewable(self.items[i])), None)

    def taken(self, item: QueueItem) -> bool:
        """Decided by someone else since the queue was read (so not to be overwritten from here)."""
        moved_on = self.filters.state is not None and item.state != self.filters.state
        return moved_on and item.reviewer not in (None, self.reviewer)

    def toggle(self, item: QueueItem) -> None:
        self.selected.symmetric_difference_update({item.id})

    def update(self, caption_id: int, state: str, version: int, text: str,
               reviewer: str | None) -> QueueItem | None:
        """Take a newer version of a caption; returns the item when it changed."""
        item = self.get(caption_id)
        if item is None or version <= item.version:
            return None
        wanted = self.filters.state
        if wanted and self.left is not None:
            self.left += (state == wanted) - (item.state == wanted)
        item.state, item.version, item.text, item.reviewer = state, version, text, reviewer
        return item
