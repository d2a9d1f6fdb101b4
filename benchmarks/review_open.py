"""How fast `catalogcap review` opens on 100,000 pending captions, and moves to the next one.

    python benchmarks/review_open.py [--captions 100000] [--json] [--screen] [--quick]

Builds a temporary store with bulk SQL inserts, then measures in this one process:

- open, data: the first page and the count (catalogcap) against reading every pending
  caption with its path (a naive queue);
- open, app: the headless review app from start to the first caption's detail on screen,
  against a plain Textual app that loads every pending caption into its table;
- next: `s` (skip) and `a` (accept, saved) until the next caption's detail is on screen
  (screen updates included), against the naive app deciding the same way, run here: the
  accept written (`store.captions.decide`), the whole pending list re-read into its table,
  the cursor on the next caption and one screen refresh (median of `--naive-steps`). The
  data part alone (re-reading the list, what earlier versions assumed a decision costs) is
  printed beside it.

Prints each number and its ratio to the baseline (higher is better for catalogcap).
`--screen` also prints a text capture of the main screen.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from textual.app import App, ComposeResult  # noqa: E402
from textual.widgets import DataTable  # noqa: E402

from catalogcap.review import queue  # noqa: E402
from catalogcap.review.app import ReviewApp  # noqa: E402
from catalogcap.review.loading import DEBOUNCE_SECONDS  # noqa: E402
from catalogcap.review.queue import Filters  # noqa: E402
from catalogcap.store.captions import decide  # noqa: E402
from catalogcap.store.database import create_store_engine, read_session, write_session  # noqa: E402
from catalogcap.store.models import AssetPath, Caption  # noqa: E402

SIZE = (140, 40)
STEPS = 50
NAIVE_STEPS = 5


def fill(engine: sa.Engine, captions: int) -> None:
    """captions / 2 images, each with a pending alt text and description (bulk INSERT ... SELECT)."""
    ts = "2026-01-01 00:00:00.000000"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"""
            WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {captions // 2})
            INSERT INTO assets (id, fingerprint, size, width, height, format, state, created_at, updated_at)
            SELECT i, printf('%064x', i), 250000, 2000, 2000, 'JPEG', 'captioned', '{ts}', '{ts}' FROM seq""")
        conn.exec_driver_sql(f"""
            INSERT INTO asset_paths (asset_id, path, size, mtime_ns, missing, first_seen, last_seen)
            SELECT id, printf('/catalog/images/%06d.jpg', id), 250000, 0, 0, '{ts}', '{ts}' FROM assets""")
        conn.exec_driver_sql(f"""
            INSERT INTO captions (asset_id, kind, model_text, text, state, model, generation, version,
                                  created_at, updated_at)
            SELECT a.id, k.kind, k.prefix || a.id, k.prefix || a.id, 'pending', 'Salesforce/blip-image-captioning-base',
                   '{{}}', 1, '{ts}', '{ts}'
            FROM assets a CROSS JOIN (SELECT 'alt_text' AS kind, 'A red cotton shirt, item ' AS prefix
                                      UNION ALL SELECT 'description', 'A red cotton shirt on white, item ') k
            ORDER BY a.id, k.kind""")


def naive_list(engine: sa.Engine) -> list[tuple]:
    """Every pending caption with its path, in id order: the queue a naive app would load."""
    c, p = Caption.__table__.c, AssetPath.__table__.c
    query = (sa.select(c.id, c.kind, c.state, c.text, p.path)
             .join_from(Caption.__table__, AssetPath.__table__, p.asset_id == c.asset_id)
             .where(c.state == "pending").order_by(c.id))
    with read_session(engine) as session:
        return list(session.execute(query))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best(fn: Callable[[], object], repeat: int = 3) -> float:
    return min(timed(fn) for _ in range(repeat))


class NaiveApp(App[None]):
    """The baseline app: every pending caption goes into the table before anything shows."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__()
        self.engine = engine
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield DataTable()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("id", "kind", "state", "text", "file")
        table.add_rows(naive_list(self.engine))
        self.loaded = True

    def action_accept(self) -> None:
        """Accept the caption under the cursor, then show the queue as it now is: read it all again."""
        table = self.query_one(DataTable)
        caption_id = int(table.get_row_at(table.cursor_row)[0])
        with write_session(self.engine) as session:
            decide(session, caption_id, "accept", reviewer="naive")
        row = table.cursor_row
        table.clear()
        table.add_rows(naive_list(self.engine))
        table.move_cursor(row=min(row, table.row_count - 1))  # the accepted one left the list: the next is here


async def until(pilot, condition: Callable[[], bool]) -> None:
    while not condition():
        await pilot.pause(0.001)


async def open_review(engine: sa.Engine, *, steps: int = 0,
                      show_screen: bool = False) -> tuple[float, list[float], list[float]]:
    """Seconds until the first caption's detail is shown; then per-step seconds of skip and accept."""
    app = ReviewApp(engine, reviewer="bench")
    start = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        def shown() -> bool:
            item = app.current()
            return item is not None and app.detail is not None and app.detail.id == item.id

        await until(pilot, shown)
        opened = time.perf_counter() - start
        await until(pilot, lambda: app.rows.left is not None)
        skips: list[float] = []
        accepts: list[float] = []
        # the actions the `s` and `a` keys run, called directly: Pilot's own pauses are not timed
        for action, into in [(app.action_skip, skips), (app.action_accept, accepts)] * steps:
            start = time.perf_counter()
            action()
            await app.saved()
            await until(pilot, lambda: shown() and not app._writes)
            into.append(time.perf_counter() - start)
        if show_screen:
            await pilot.pause(0.1)
            print(app.screen_text())
    return opened, skips, accepts


async def measure_apps(engine: sa.Engine, show_screen: bool, *, steps: int = STEPS,
                       naive_steps: int = NAIVE_STEPS) -> dict[str, float]:
    opens = [(await open_review(engine))[0] for _ in range(2)]
    last, skips, accepts = await open_review(engine, steps=steps, show_screen=show_screen)
    app = NaiveApp(engine)
    start = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded)
        naive_open = time.perf_counter() - start
        naive_accepts: list[float] = []
        for _ in range(naive_steps):
            start = time.perf_counter()
            app.action_accept()  # what its `a` key would run; written and re-read before it returns
            await pilot.pause()  # one screen refresh, as the catalogcap steps wait for theirs
            naive_accepts.append(time.perf_counter() - start)
    return {"naive_app_open_s": naive_open, "app_open_s": statistics.median([*opens, last]),
            "skip_s": statistics.median(skips), "accept_s": statistics.median(accepts),
            "naive_accept_s": statistics.median(naive_accepts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--captions", type=int, default=100_000, help="pending captions in the store")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--screen", action="store_true", help="also print the main screen as text")
    parser.add_argument("--steps", type=int, default=STEPS, help="skips and accepts timed in catalogcap's app")
    parser.add_argument("--naive-steps", type=int, default=NAIVE_STEPS, help="accepts timed in the naive app")
    parser.add_argument("--quick", action="store_true", help="20,000 captions, 10 steps, 3 naive steps")
    args = parser.parse_args()
    if args.quick:
        args.captions, args.steps, args.naive_steps = 20_000, 10, 3

    with tempfile.TemporaryDirectory() as tmp:
        engine = create_store_engine(f"sqlite:///{tmp}/catalogcap.db")
        fill(engine, args.captions)

        def first_screen() -> None:
            with read_session(engine) as session:
                queue.page(session, Filters())
                queue.count(session, Filters())

        result = {
            "captions": args.captions,
            "naive_data_open_s": best(lambda: naive_list(engine)),
            "data_open_s": best(first_screen),
            **asyncio.run(measure_apps(engine, args.screen, steps=args.steps, naive_steps=args.naive_steps)),
        }
        result["reload_s"] = result["naive_data_open_s"]  # the data part of a naive decision: re-reading the list
        engine.dispose()
    result["data_open_ratio"] = result["naive_data_open_s"] / result["data_open_s"]
    result["app_open_ratio"] = result["naive_app_open_s"] / result["app_open_s"]
    result["next_ratio"] = result["naive_accept_s"] / result["accept_s"]  # measured naive decision
    result["next_reload_ratio"] = result["reload_s"] / result["accept_s"]  # the old, assumed baseline
    if args.json:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))
        return
    ms = {k: v * 1000 for k, v in result.items() if k.endswith("_s")}
    print(f"{args.captions:,} pending captions")
    print(f"open, data   first page + count {ms['data_open_s']:8.1f} ms   "
          f"read everything {ms['naive_data_open_s']:8.1f} ms   x{result['data_open_ratio']:.0f}")
    print(f"open, app    first detail shown {ms['app_open_s']:8.1f} ms   "
          f"table of everything {ms['naive_app_open_s']:8.1f} ms   x{result['app_open_ratio']:.1f}")
    print(f"next         skip (s)           {ms['skip_s']:8.1f} ms")
    print(f"             accept (a), saved  {ms['accept_s']:8.1f} ms   "
          f"naive app accept {ms['naive_accept_s']:8.1f} ms   x{result['next_ratio']:.1f}")
    print(f"             {'':<18} {'':>8}      (the list re-read alone    {ms['reload_s']:8.1f} ms"
          f"   x{result['next_reload_ratio']:.1f})")
    print(f"(open: median of 3; next: median of {args.steps}, including the {DEBOUNCE_SECONDS * 1000:.0f} ms "
          f"debounce before the detail is read; naive accept: median of {args.naive_steps}, written, list"
          " re-read into the table, one screen refresh)")


if __name__ == "__main__":
    main()
