"""The image lifecycle: a replaced file's pending captions are superseded (kept, out of the queue),
a deleted file's pending captions leave the queue and exports and come back with its bytes, and
`captions prune --missing` clears what is gone."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlmodel import select

from catalogcap.cli import cli
from catalogcap.intake import mark_missing, register_file
from catalogcap.plugins.events import select_caption_events
from catalogcap.review import queue
from catalogcap.review.queue import Filters
from catalogcap.status import store_status
from catalogcap.store.captions import decide, save_model_captions
from catalogcap.store.database import read_session, write_session
from catalogcap.store.models import KINDS, Asset, AssetPath, Caption
from tests.conftest import make_image


def _caption(engine, asset_id: int, alt: str = "a shoe") -> dict[str, int]:
    with write_session(engine) as session:
        saved = save_model_captions(session, asset_id, {"alt_text": alt, "description": f"{alt}."}, model="m",
                                    adapter_id=None, generation={k: {} for k in KINDS})
        return {c.kind: c.id for c in saved}


def _queue(engine, **filters) -> list[int]:
    with read_session(engine) as session:
        return [item.id for item in queue.page(session, Filters(**filters))]


def _states(engine, asset_id: int) -> set[str]:
    with read_session(engine) as session:
        return {c.state for c in session.exec(select(Caption).where(Caption.asset_id == asset_id))}


def test_a_replaced_file_supersedes_its_pending_captions_and_they_return_with_its_bytes(engine, settings,
                                                                                     tmp_path: Path) -> None:
    photo = make_image(tmp_path / "shoe.jpg", "red")
    old_bytes = photo.read_bytes()
    old = register_file(engine, photo, settings).asset_id
    ids = _caption(engine, old)
    make_image(photo, "blue")
    new = register_file(engine, photo, settings).asset_id
    assert new != old and _states(engine, old) == {"superseded"}
    assert _queue(engine) == [] and _queue(engine, state=None) == []
    assert sorted(_queue(engine, state="superseded")) == sorted(ids.values())
    status = store_status(engine)
    assert status["captions"]["superseded"] == 2 and status["orphaned"] == 0
    with read_session(engine) as session:  # exports take no pending caption of the old bytes
        assert select_caption_events(session, states=["pending"]) == []
    assert json.loads(CliRunner().invoke(cli, ["captions", "list", "--json"]).stdout) == []
    (tmp_path / "back.jpg").write_bytes(old_bytes)  # the old picture again, under another name
    assert register_file(engine, tmp_path / "back.jpg", settings).asset_id == old
    assert _states(engine, old) == {"pending"} and sorted(_queue(engine)) == sorted(ids.values())


def test_a_deleted_file_leaves_queue_and_exports_and_comes_back_under_any_name(engine, settings,
                                                                              tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    photo = make_image(folder / "lamp.jpg", "green")
    asset = register_file(engine, photo, settings).asset_id
    ids = _caption(engine, asset)
    keep = tmp_path / "lamp.bak"
    shutil.move(photo, keep)
    assert mark_missing(engine, folder) == 1
    assert _queue(engine) == [] and _queue(engine, state=None) == []
    with read_session(engine) as session:
        assert select_caption_events(session, states=["pending"]) == []
        assert queue.count(session, Filters()) == 0
    assert store_status(engine)["orphaned"] == 2
    shutil.move(keep, folder / "renamed.jpg")
    assert register_file(engine, folder / "renamed.jpg", settings).asset_id == asset
    assert sorted(_queue(engine)) == sorted(ids.values()) and store_status(engine)["orphaned"] == 0
    with read_session(engine) as session:
        assert [e.path for e in select_caption_events(session, states=["pending"])] == [
            str(folder / "renamed.jpg")] * 2


def _gone(engine, settings, folder: Path, name: str, color: str, *, review: bool = False) -> int:
    photo = make_image(folder / name, color)
    asset = register_file(engine, photo, settings).asset_id
    ids = _caption(engine, asset, f"a {color} thing")
    if review:
        with write_session(engine) as session:
            decide(session, ids["alt_text"], "accept", reviewer="ann")
    photo.unlink()
    return asset


def prune(*args: str) -> dict:
    result = CliRunner().invoke(cli, ["captions", "prune", "--missing", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_prune_missing(engine, settings, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    plain = _gone(engine, settings, folder, "a.jpg", "red")
    reviewed = _gone(engine, settings, folder, "b.jpg", "blue", review=True)
    here = make_image(folder / "c.jpg", "yellow")
    present = register_file(engine, here, settings).asset_id
    _caption(engine, present)
    replaced = make_image(folder / "d.jpg", "white")
    superseded = register_file(engine, replaced, settings).asset_id
    _caption(engine, superseded)
    make_image(replaced, "black")
    register_file(engine, replaced, settings)
    mark_missing(engine, folder)
    with write_session(engine) as session:  # the red image went missing long ago
        session.get(Asset, plain).missing_since -= timedelta(days=40)
        session.add(session.get(Asset, plain))

    usage = CliRunner().invoke(cli, ["captions", "prune"])
    assert usage.exit_code == 2 and "--missing" in usage.output
    dry = prune("--dry-run")
    assert dry["dry_run"] and dry["captions"] == 5 and dry["kept_reviewed"] == 1
    assert dry["by_state"] == {"pending": 3, "superseded": 2} and dry["assets"] == 2
    older = prune("--older-than", "30", "--dry-run")
    assert older["captions"] == 2 and {i["asset_id"] for i in older["items"]} == {plain}
    with read_session(engine) as session:
        assert len(session.exec(select(Caption)).all()) == 8  # a dry run deletes nothing

    done = prune()
    assert done["captions"] == 5 and done["assets"] == 2
    with read_session(engine) as session:
        assert session.get(Asset, plain) is None and session.get(Asset, superseded) is None
        assert not session.exec(select(AssetPath).where(AssetPath.asset_id == plain)).all()
        kept = session.exec(select(Caption).where(Caption.asset_id == reviewed)).all()
        assert [c.state for c in kept] == ["accepted"] and session.get(Asset, reviewed) is not None
        assert len(session.exec(select(Caption).where(Caption.asset_id == present)).all()) == 2
    everything = prune("--include-reviewed")
    assert everything["captions"] == 1 and everything["assets"] == 1
    status = store_status(engine)
    assert status["orphaned"] == 0 and status["captions"]["superseded"] == 0 and status["assets"] == 2


def _store_for_counts(engine) -> None:
    """Assets whose captions are and are not orphaned, each way a path can be live or not, plus
    jobs for the throughput count and the last error."""
    from catalogcap.store.models import Job, utcnow

    now = utcnow()
    #  live paths, missing paths, missing_since?, caption states (alt text, description)
    layout = [(1, 0, False, ("pending", "pending")),      # live: not orphaned
              (1, 2, False, ("pending", "accepted")),     # one live path of three: not orphaned
              (0, 2, True, ("pending", "accepted")),      # every path missing: 1 orphaned
              (0, 0, False, ("pending", "pending")),      # no path at all: 2 orphaned
              (0, 1, True, ("superseded", "rejected")),   # gone, nothing pending
              (2, 0, False, ("superseded", "edited")),    # live, superseded
              (0, 1, True, ("pending", None))]            # one caption only: 1 orphaned
    with write_session(engine) as session:
        for n, (live, missing, gone, states) in enumerate(layout):
            asset = Asset(fingerprint=f"{n:064x}", size=1, state="captioned", missing_since=now if gone else None)
            session.add(asset)
            session.flush()
            for p in range(live + missing):
                session.add(AssetPath(asset_id=asset.id, path=f"/c/{n}/{p}.jpg", size=1, mtime_ns=0,
                                      missing=p >= live))
            for kind, state in zip(KINDS, states):
                if state is not None:
                    session.add(Caption(asset_id=asset.id, kind=kind, model_text="t", text="t", state=state, model="m",
                                        created_at=now, updated_at=now))
        asset_ids = [a.id for a in session.exec(select(Asset).order_by(Asset.id))]
        jobs = [("done", now - timedelta(minutes=1), None, now),           # within 5 minutes
                ("done", now - timedelta(minutes=10), "old error", now - timedelta(minutes=10)),  # too old
                ("failed", None, "the newest error", now - timedelta(minutes=2)),
                ("failed", None, "an older error", now - timedelta(minutes=3)),
                ("pending", None, None, now),                               # newer, without an error
                ("done", now - timedelta(minutes=4), None, now - timedelta(minutes=4))]
        for asset_id, (state, finished, error, updated) in zip(asset_ids, jobs):
            session.add(Job(asset_id=asset_id, state=state, finished_at=finished, last_error=error, created_at=updated,
                            updated_at=updated, run_after=updated))


def test_status_counts_are_exact(engine) -> None:
    """`status`'s counts, each read from an index (migration 0009), against the rows counted one
    by one in Python: orphaned, superseded, missing, throughput, the last error."""
    from catalogcap.store.models import Job

    _store_for_counts(engine)
    status = store_status(engine)
    with read_session(engine) as session:
        captions = session.exec(select(Caption)).all()
        paths = session.exec(select(AssetPath)).all()
        assets = session.exec(select(Asset)).all()
        jobs = session.exec(select(Job)).all()
    live = {p.asset_id for p in paths if not p.missing}
    orphaned = sum(1 for c in captions if c.state == "pending" and c.asset_id not in live)
    assert orphaned == 4 and status["orphaned"] == orphaned
    by_state = {state: sum(1 for c in captions if c.state == state) for state in status["captions"]}
    assert status["captions"] == by_state and by_state["superseded"] == 2 and by_state["pending"] == 7
    assert status["missing"] == sum(1 for a in assets if a.missing_since is not None) == 3
    assert status["captions_per_minute"] == 0.4  # two jobs done in the last 5 minutes
    assert status["last_error"]["error"] == "the newest error"
    assert status["jobs"] == {state: sum(1 for j in jobs if j.state == state) for state in status["jobs"]}
    assert status["jobs"]["done"] == 3 and status["jobs"]["failed"] == 2 and status["assets"] == len(assets) == 7


@pytest.mark.sqlite_only  # SQLite's EXPLAIN QUERY PLAN
def test_status_reads_its_counts_from_indexes_on_sqlite(engine) -> None:
    """On SQLite (no table statistics) every count of `status` is answered from an index: no
    scan of a whole table and no sort; what made `status` slow on 1,000,000 captions."""
    import re

    import sqlalchemy as sa

    _store_for_counts(engine)
    statements: list[tuple[str, object]] = []
    listener = lambda conn, cursor, statement, params, context, many: statements.append((statement, params))  # noqa: E731
    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        store_status(engine)
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)
    plans = []
    with engine.connect() as conn:
        for statement, params in statements:
            if statement.lstrip().upper().startswith("SELECT"):
                plans += [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()]
    big = r"(assets|asset_paths|captions|jobs)"
    assert plans and not [p for p in plans if re.fullmatch(rf"SCAN {big}", p) or "TEMP B-TREE" in p], plans
    assert not [p for p in plans if re.match(rf"(SCAN|SEARCH) {big} USING INDEX", p)
                and "ix_jobs_errors_updated_at" not in p], plans  # covering, except the one row of the last error
