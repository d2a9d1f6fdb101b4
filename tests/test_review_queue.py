"""The review queue: keyset pages over the right index, filters, counts, and the loaded rows.

Also home to the helpers the other review tests share (captions through the store's own
code, and 100,000 pending captions through bulk SQL).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from catalogcap.errors import CatalogcapError
from catalogcap.review import queue
from catalogcap.review.queue import PAGE_SIZE, Filters
from catalogcap.review.rows import Rows
from catalogcap.store.captions import decide
from catalogcap.store.database import read_session, write_session
from catalogcap.store.models import KINDS
from tests.factories import T0, add_captions, fill_pending


def plan(engine: Engine, statement) -> list[tuple[int, int, str]]:
    """EXPLAIN QUERY PLAN rows as (id, parent, detail)."""
    sql = str(statement.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        return [(row[0], row[1], row[3]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]


def top_level(rows: list[tuple[int, int, str]]) -> list[str]:
    return [detail for _, parent, detail in rows if parent == 0]


# ---------------------------------------------------------------------------- tests


def test_filters_validate_and_describe(tmp_path: Path) -> None:
    with pytest.raises(CatalogcapError, match="unknown caption state 'done'"):
        Filters(state="done")
    with pytest.raises(CatalogcapError, match="unknown caption kind"):
        Filters(kind="caption")
    f = Filters(kind="alt_text", folder=str(tmp_path), adapter="none", search="  ", model="")
    assert f.search is None and f.model is None
    assert f.describe() == f"pending · alt_text · in {tmp_path} · base model"


def test_pages_follow_ids_across_kinds_and_pages(engine) -> None:
    ids = add_captions(engine, 7)
    with read_session(engine) as session:
        first = queue.page(session, Filters(), limit=4)
        second = queue.page(session, Filters(), after_id=first[-1].id, limit=4)
        rest = queue.page(session, Filters(), after_id=second[-1].id, limit=100)
    seen = [item.id for item in first + second + rest]
    assert seen == sorted(ids)
    assert [item.kind for item in first] == ["alt_text", "description"] * 2
    assert first[0].path == "/catalog/images/item-0000.jpg"
    assert first[0].model_text == first[0].text == "A red shirt number 0"


def test_filters_narrow_the_queue(engine) -> None:
    add_captions(engine, 3, folder="/shop/shoes")
    add_captions(engine, 2, folder="/shop/shirts", start=3, model="Salesforce/blip-large", adapter="night-2")
    add_captions(engine, 1, folder="/shop/shoes-archive", start=5)
    with read_session(engine) as session:
        def ids(**kw) -> int:
            return len(queue.page(session, Filters(**kw))), queue.count(session, Filters(**kw))

        assert ids() == (12, 12)
        assert ids(kind="alt_text") == (6, 6)
        assert ids(folder="/shop/shoes") == (6, 6)  # not the sibling folder /shop/shoes-archive
        assert ids(model="LARGE") == (4, 4)
        assert ids(adapter="night-2") == (4, 4)
        assert ids(adapter="none") == (8, 8)
        assert ids(search="number 4") == (2, 2)
        assert ids(search="100%") == (0, 0)  # wildcards are searched for, not expanded
        assert ids(state="accepted") == (0, 0)


def test_detail_has_image_facts_and_the_other_kind(engine) -> None:
    alt, description = add_captions(engine, 1)[:2]
    with read_session(engine) as session:
        d = queue.detail(session, alt)
    assert (d.kind, d.state, d.version, d.width, d.height, d.format) == ("alt_text", "pending", 1, 800, 600, "JPEG")
    assert d.path == "/catalog/images/item-0000.jpg" and not d.all_missing
    assert [(s.kind, s.text) for s in d.siblings] == [("description", "A red cotton shirt, number 0, on white.")]
    assert d.created_at == T0 and d.model == "blip-base" and d.adapter is None
    with write_session(engine) as session:
        decide(session, description, "reject", reviewer="bob")
    with read_session(engine) as session:
        assert queue.refresh(session, [description]) == {description: ("rejected", 2, d.siblings[0].text, "bob")}


@pytest.mark.sqlite_only  # reads SQLite's EXPLAIN QUERY PLAN
def test_first_page_of_100k_pending_uses_the_index_and_no_sort(engine) -> None:
    """Opening the queue reads one page per kind straight off (state, kind, id): no scan, no sort."""
    fill_pending(engine, 50_000)
    for kind in KINDS:
        rows = plan(engine, queue.page_query(Filters(), kind, 0, PAGE_SIZE))
        outer = top_level(rows)
        assert any("USING INDEX ix_captions_state_kind_id (state=? AND kind=? AND id>?)" in d for d in outer), rows
        assert not any("TEMP B-TREE" in d for d in outer), rows
        assert any("asset_paths USING INDEX ix_asset_paths_asset_id (asset_id=?)" in d for *_, d in rows), rows
    count_plan = plan(engine, queue.sa.select(queue.sa.func.count()).select_from(queue._captions).where(
        *queue._conditions(Filters(), None)))
    # the count reads the (state, asset_id) index alone (migration 0009; before it, (state, kind, id) and
    # each caption's row) and checks each caption's image for a live path by asset_id
    assert any("USING COVERING INDEX ix_captions_state_asset_id (state=?)" in d for *_, d in count_plan), count_plan
    assert any("asset_paths USING INDEX ix_asset_paths_asset_id (asset_id=?)" in d for *_, d in count_plan), \
        count_plan
    with read_session(engine) as session:
        first = queue.page(session, Filters())
        deep = queue.page(session, Filters(), after_id=90_000)
        assert queue.count(session, Filters()) == 100_000
    assert [item.id for item in first] == list(range(1, PAGE_SIZE + 1))
    assert [item.id for item in deep] == list(range(90_001, 90_001 + PAGE_SIZE))  # keyset, not OFFSET


def test_rows_track_marks_next_item_and_what_is_left() -> None:
    def item(i: int, state: str = "pending", reviewer: str | None = None) -> queue.QueueItem:
        return queue.QueueItem(i, i, "alt_text", "t", "t", state, 1, reviewer, None)

    rows = Rows(Filters(), "alice")
    assert [i.id for i in rows.add([item(1), item(2), item(3, "accepted", "bob")])] == [1, 2, 3]
    assert rows.add([item(3), item(4)])[0].id == 4  # a page that overlaps adds only what is new
    rows.left = 3
    rows.saving.add(2)
    assert rows.next_row(0) == 3  # 2 is being saved, 3 was taken by bob
    assert rows.taken(rows.get(3)) and not rows.taken(rows.get(1))
    assert rows.update(1, "accepted", 2, "t", "alice") is rows.get(1)
    assert rows.left == 2
    assert rows.update(1, "pending", 2, "t", None) is None  # not newer: ignored
    assert rows.update(1, "pending", 3, "t", None) is not None and rows.left == 3
