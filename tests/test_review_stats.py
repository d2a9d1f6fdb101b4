"""`catalogcap review stats`: review rates, edit distance and pace per adapter version."""

from __future__ import annotations

import json
from datetime import timedelta

from click.testing import CliRunner

from catalogcap.cli import cli
from catalogcap.review.stats import edit_distance, review_stats
from catalogcap.store.captions import decide
from catalogcap.store.database import read_session, write_session
from tests.factories import T0, add_captions


def test_edit_distance() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == edit_distance("abc", "") == 3
    assert edit_distance("A red shirt on white", "A red shirt on white") == 0
    assert edit_distance("A red shirt on white", "A blue shirt on white") == 4
    assert edit_distance("aaa", "aaaa") == 1


def seed(engine) -> tuple[list[int], list[int]]:
    base = add_captions(engine, 3)  # 6 captions of the base model
    night = add_captions(engine, 2, start=3, adapter="night-1")  # 4 of the first adapter
    at = T0 + timedelta(hours=1)
    steps = [  # (caption, decision, text, minutes after the previous one)
        (base[0], "accept", None, 0), (base[1], "edit", "A red cotton shirt, number 0, on grey.", 1),
        (base[2], "edit", "A red shirt no 1", 1), (base[3], "reject", None, 2),
        (night[0], "accept", None, 60),  # after a break: its time does not count
        (night[1], "accept", None, 1), (night[2], "edit", "A red shirt number 30", 1),
    ]
    with write_session(engine) as session:
        for caption_id, decision, text, minutes in steps:
            at += timedelta(minutes=minutes)
            decide(session, caption_id, decision, reviewer="alice", text=text, now=at)
    return base, night


def test_rates_edit_distance_and_items_per_hour_per_adapter(engine) -> None:
    seed(engine)
    with read_session(engine) as session:
        base, night, total = review_stats(session)
    assert (base.adapter, base.captions, base.pending, base.decided) == ("base", 6, 2, 4)
    assert (base.accepted, base.edited, base.rejected) == (1, 2, 1)
    assert (base.acceptance_rate, base.edit_rate, base.rejection_rate) == (0.25, 0.5, 0.25)
    assert base.mean_edit_distance == 5  # "white." -> "grey." and "number 1" -> "no 1": 5 each
    assert base.items_per_hour == 4 / (4 / 60)  # 4 decisions in the 4 minutes they took
    assert (night.adapter, night.decided, night.acceptance_rate, night.mean_edit_distance) == ("night-1", 3, 0.6667, 2)
    assert night.items_per_hour == 3 / (2 / 60)
    assert (total.adapter, total.captions, total.decided, total.edited) == ("all", 10, 7, 3)
    with read_session(engine) as session:
        only_alt = review_stats(session, kind="alt_text")
    assert [s.captions for s in only_alt] == [3, 2, 5]


def test_stats_command_prints_a_table_and_json(engine) -> None:
    runner = CliRunner()
    assert "no captions yet" in runner.invoke(cli, ["review", "stats"]).stdout
    seed(engine)
    table = runner.invoke(cli, ["review", "stats"], env={"COLUMNS": "160"})
    assert table.exit_code == 0, table.output
    assert "night-1" in table.stdout and "1 (25%)" in table.stdout and "edit distance" in table.stdout
    rows = json.loads(runner.invoke(cli, ["review", "stats", "--json"]).stdout)
    assert [r["adapter"] for r in rows] == ["base", "night-1", "all"]
    assert rows[0]["acceptance_rate"] == 0.25 and rows[0]["decided"] == 4
