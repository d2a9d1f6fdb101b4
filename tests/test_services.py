"""The services layer through every door: hooks after each commit, limits, adapters, recaption, jobs,
and the one primary path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlmodel import select

from catalogcap.api.app import create_app
from catalogcap.cli import cli
from catalogcap.plugins.events import caption_events
from catalogcap.services import Callbacks
from catalogcap.services import adapters as adapter_service
from catalogcap.services.captions import Decision, decide_each
from catalogcap.services.recaption import recaption
from catalogcap.store.captions import list_captions
from catalogcap.store.database import read_session, write_session
from catalogcap.store.models import Adapter, AssetPath, Caption, Job, utcnow
from catalogcap.store.paths import primary_path
from catalogcap.training import registry
from tests.conftest import make_image
from tests.factories import RecordingHooks, assert_problem, bearer
from tests.plugin_support import add_image


class Recorder(RecordingHooks):
    """Every announcement, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.promoted: list[str] = []
        self.rolled_back: list[tuple[str, str | None]] = []

    def adapter_promoted(self, adapter) -> None:
        self.promoted.append(adapter.id)

    def adapter_rolled_back(self, adapter, active) -> None:
        self.rolled_back.append((adapter.id, active.id if active else None))


@pytest.fixture
def heard(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """What the CLI announces to plugins (its `hooks_for` returns this recorder)."""
    recorder = Recorder()
    monkeypatch.setattr("catalogcap.plugins.hooks_for", lambda app: recorder)
    return recorder


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def state_of(engine, caption_id: int) -> Caption:
    with read_session(engine) as session:
        return session.get(Caption, caption_id)


def test_a_partial_cli_failure_still_announces_what_was_committed(home: Path, engine, photos: Path,
                                                                  heard: Recorder) -> None:
    first = add_image(engine, photos / "red-shirt.jpg")["alt_text"]
    second = add_image(engine, photos / "blue-mug.png")["alt_text"]
    out = run("captions", "accept", str(first), str(second), "999", code=1)
    assert f"caption {first}: accepted" in out and f"caption {second}: accepted" in out
    assert "caption 999 does not exist" in out
    assert heard.reviewed == [([first], "accept"), ([second], "accept")]
    assert state_of(engine, first).state == state_of(engine, second).state == "accepted"


def test_each_commit_is_announced_before_the_next_caption_is_decided(engine, photos: Path) -> None:
    ids = [add_image(engine, photos / name)["alt_text"] for name in ("red-shirt.jpg", "blue-mug.png")]
    seen_states: list[str] = []

    def reviewed(caption_ids: list[int], decision: str) -> None:
        # the announced caption is committed; the next one is not decided yet
        seen_states.append(state_of(engine, caption_ids[0]).state)
        seen_states.append(state_of(engine, ids[1]).state)

    decided = decide_each(engine, Callbacks(reviewed=reviewed), [ids[0], 12345, ids[1]],
                          Decision("reject", "tester", reason="blurry"))
    assert seen_states == ["rejected", "pending", "rejected", "rejected"]
    assert decided.ids == ids and [str(e) for e in decided.errors] == ["caption 12345 does not exist"]


def test_the_alt_text_limit_holds_through_the_cli(home: Path, engine, photos: Path, heard: Recorder) -> None:
    caption_id = add_image(engine, photos / "red-shirt.jpg")["alt_text"]
    out = run("--set", "alt_text_limit=20", "captions", "edit", str(caption_id), "x" * 21, code=1)
    assert "21 characters, over the limit of 20" in out
    assert state_of(engine, caption_id).state == "pending" and heard.reviewed == []
    run("--set", "alt_text_limit=20", "captions", "edit", str(caption_id), "x" * 20)
    assert state_of(engine, caption_id).text == "x" * 20 and heard.reviewed == [([caption_id], "edit")]


def test_the_alt_text_limit_holds_through_the_api(settings, engine, photos: Path) -> None:
    caption_id = add_image(engine, photos / "red-shirt.jpg")["alt_text"]
    hooks = RecordingHooks()
    limited = settings.model_copy(update={"alt_text_limit": 30})
    with TestClient(create_app(limited, engine, run_worker=False, hooks=hooks)) as client:
        headers = {**bearer(engine, "review"), "If-Match": "*"}
        response = client.post(f"/v1/captions/{caption_id}/review", headers=headers,
                               json={"decision": "edit", "text": "y" * 31})
        body = assert_problem(response, 422, "text_too_long")
        assert "over the limit of 30" in body["detail"]
        assert hooks.reviewed == [] and state_of(engine, caption_id).state == "pending"
        ok = client.post(f"/v1/captions/{caption_id}/review", headers=headers,
                         json={"decision": "edit", "text": "y" * 30})
        assert ok.status_code == 200
    assert hooks.reviewed == [([caption_id], "edit")]  # after the commit, from the background task


def _adapter(engine, home: Path, adapter_id: str, base_model: str) -> Adapter:
    source = home / "trained" / adapter_id
    source.mkdir(parents=True)
    (source / "adapter_model.safetensors").write_bytes(b"weights")
    return registry.register_candidate(engine, home, source, adapter_id=adapter_id, base_model=base_model,
                                       parent_id=None, metrics={}, config={})


def test_adapters_promote_rollback_and_delete_tell_the_plugins(home: Path, engine, settings,
                                                               heard: Recorder) -> None:
    _adapter(engine, home, "a1", settings.model)
    _adapter(engine, home, "a2", settings.model)
    assert "adapter a1 is active" in run("adapters", "promote", "a1")
    run("adapters", "promote", "a2")
    run("adapters", "promote", "a2")  # already active: nothing changed, nothing announced
    assert heard.promoted == ["a1", "a2"]
    out = run("adapters", "rollback")
    assert "rolled back a2; active: a1" in out
    assert heard.rolled_back == [("a2", "a1")] and heard.promoted == ["a1", "a2", "a1"]
    assert "active: none (base model)" in run("adapters", "rollback")
    assert heard.rolled_back[-1] == ("a1", None) and heard.promoted[-1] == "a1"
    assert "no adapter is active" in run("adapters", "rollback", code=1)
    assert "adapter a2 deleted" in run("adapters", "delete", "a2")
    assert registry.get(engine, "a2").state == "deleted" and not (home / "adapters" / "a2").exists()
    assert "does not exist (or was deleted)" in run("adapters", "promote", "a2", code=1)


def test_concurrent_promotions_leave_one_active_adapter(home: Path, engine, settings) -> None:
    """Two processes promoting at the same moment (a nightly round and an operator, two hosts on
    one PostgreSQL): whichever commits last wins, and exactly one adapter is active after each
    race. Under PostgreSQL's read committed, each transaction would otherwise retire the
    active row it saw and both set their own adapter active."""
    import threading

    races = 12
    for n in range(2 * races):
        _adapter(engine, home, f"c{n}", settings.model)
    for race in range(races):
        start = threading.Barrier(2)
        errors: list[BaseException] = []

        def promote(adapter_id: str, start: threading.Barrier = start, errors: list = errors) -> None:
            try:
                start.wait(10)
                registry.promote(engine, adapter_id, reason="race")
            except BaseException as exc:  # the assertion below names it
                errors.append(exc)

        threads = [threading.Thread(target=promote, args=(f"c{2 * race + k}",)) for k in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors, errors
        with read_session(engine) as session:
            active = session.exec(select(Adapter).where(Adapter.state == "active")).all()
        assert [a.id for a in active] in ([f"c{2 * race}"], [f"c{2 * race + 1}"]), [a.id for a in active]


def test_an_adapter_of_another_base_model_is_refused(home: Path, engine, settings, heard: Recorder) -> None:
    _adapter(engine, home, "foreign", "Other/model")
    out = run("adapters", "promote", "foreign", code=1)
    assert "trained for model Other/model, not the configured model" in out
    assert registry.get(engine, "foreign").state == "candidate" and heard.promoted == []
    with write_session(engine) as session:  # made active behind catalogcap's back (an older version)
        row = session.get(Adapter, "foreign")
        row.state, row.promoted_at = "active", utcnow()
        session.add(row)
    assert registry.usable_active(engine, settings.model) == (None, registry.get(engine, "foreign"))
    with pytest.raises(adapter_service.ForeignAdapter):
        adapter_service.promote(engine, Callbacks(), "foreign", model=settings.model)


def test_recaption_queues_pending_images_only_and_announces_new_captions(home: Path, engine, settings,
                                                                        photos: Path, heard: Recorder) -> None:
    pending = add_image(engine, photos / "red-shirt.jpg")
    reviewed = add_image(engine, photos / "blue-mug.png")
    for kind in ("alt_text", "description"):
        decide_each(engine, Callbacks(), [reviewed[kind]], Decision("accept", "tester"))
    assert json.loads(run("recaption", "--queue-only", "--json")) == {"queued": 1, "captioned": 0}
    with read_session(engine) as session:
        jobs = session.exec(select(Job)).all()
        pending_asset = session.get(Caption, pending["alt_text"]).asset_id
    assert [(job.asset_id, job.state) for job in jobs] == [(pending_asset, "pending")]
    assert json.loads(run("recaption", "--queue-only", "--json"))["queued"] == 1  # no second job

    class OneBatch:
        """Stands in for the captioning worker: one batch of captions, committed, then announced."""

        def __init__(self, engine, settings, on_captions) -> None:
            self.on_captions, self.closed = on_captions, False

        def drain(self):
            self.on_captions([pending["alt_text"], pending["description"]])
            return type("Result", (), {"captioned": 1})()

        def close(self) -> None:
            self.closed = True

    created = Recorder()
    result = recaption(engine, settings, created, worker_factory=OneBatch)
    assert (result.queued, result.captioned) == (1, 1)
    assert created.created == [pending["alt_text"], pending["description"]]
    with pytest.raises(Exception, match="a reviewed caption is never overwritten"):
        recaption(engine, settings, created, state="accepted")


def test_jobs_list_and_retry(home: Path, engine, photos: Path) -> None:
    ids = add_image(engine, photos / "red-shirt.jpg")
    with write_session(engine) as session:
        asset_id = session.get(Caption, ids["alt_text"]).asset_id
        now = utcnow()
        session.add(Job(asset_id=asset_id, state="failed", attempts=3, last_error="unreadable", run_after=now,
                        created_at=now, updated_at=now, finished_at=now))
    listed = json.loads(run("jobs", "list", "--json"))
    assert [(j["state"], j["attempts"], j["last_error"]) for j in listed] == [("failed", 3, "unreadable")]
    assert listed[0]["path"] == str((photos / "red-shirt.jpg").absolute())
    assert json.loads(run("jobs", "list", "--state", "pending", "--json")) == []
    assert "give a JOB_ID or --all-failed" in run("jobs", "retry", code=2)
    assert "job 99 does not exist" in run("jobs", "retry", "99", code=1)
    assert "1 job(s) queued again" in run("jobs", "retry", str(listed[0]["id"]))
    again = json.loads(run("jobs", "list", "--json"))
    assert [(j["state"], j["attempts"]) for j in again] == [("pending", 0)]
    assert "0 job(s) queued again" in run("jobs", "retry", "--all-failed")


def test_every_door_names_the_same_primary_path(settings, engine, tmp_path: Path) -> None:
    first = make_image(tmp_path / "z-first.jpg")
    ids = add_image(engine, first)
    # registered second and third; by name the third sorts first, so name order would disagree
    copies = [tmp_path / "y-second.jpg", tmp_path / "m-third.jpg"]
    with write_session(engine) as session:
        asset_id = session.get(Caption, ids["alt_text"]).asset_id
        for path in copies:
            session.add(AssetPath(asset_id=asset_id, path=str(path), size=1, mtime_ns=0))
            session.flush()
        gone = session.exec(select(AssetPath).where(AssetPath.path == str(first.absolute()))).one()
        gone.missing = True  # the first registered path went away
        session.add(gone)
    expected = str(copies[0])
    with read_session(engine) as session:
        assert primary_path(session, asset_id) == expected
        assert {row.path for row in list_captions(session, asset_id=asset_id)} == {expected}
        assert {event.path for event in caption_events(session, list(ids.values()))} == {expected}
    with TestClient(create_app(settings, engine, run_worker=False, hooks=RecordingHooks())) as client:
        body = client.get(f"/v1/captions/{ids['alt_text']}", headers=bearer(engine, "read")).json()
    assert body["path"] == expected


def test_a_spreadsheet_import_is_announced_after_its_commit(home: Path, engine, photos: Path, tmp_path: Path,
                                                            heard: Recorder) -> None:
    import csv

    ids = add_image(engine, photos / "red-shirt.jpg")
    sheet = tmp_path / "review.csv"
    run("review", "export", "--csv", str(sheet))
    with sheet.open(encoding="utf-8-sig", newline="") as fp:
        rows = list(csv.DictReader(fp))
    for row in rows:
        row["decision"] = "accept" if int(row["caption_id"]) == ids["alt_text"] else "reject"
    with sheet.open("w", encoding="utf-8-sig", newline="") as fp:
        writer = csv.DictWriter(fp, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    run("review", "import", str(sheet), "--reviewer", "carol")
    assert sorted(heard.reviewed) == [([ids["alt_text"]], "accept"), ([ids["description"]], "reject")]
    assert state_of(engine, ids["alt_text"]).state == "accepted"


def test_catalogcap_caption_ignores_an_adapter_of_another_model_as_the_worker_does(
        home: Path, engine, photos: Path) -> None:
    _adapter(engine, home, "foreign", "Other/model")
    with write_session(engine) as session:
        row = session.get(Adapter, "foreign")
        row.state, row.promoted_at = "active", utcnow()
        session.add(row)
    result = CliRunner().invoke(cli, ["caption", str(photos / "red-shirt.jpg"), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "active adapter foreign was trained for model Other/model" in result.stderr
    [item] = json.loads(result.stdout)
    assert item["alt_text"] and "error" not in item  # captioned by the base model, not refused outright
