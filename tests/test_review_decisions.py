"""Decisions with undo, against a real temp SQLite store, with a second reviewer interfering."""

from __future__ import annotations

import pytest

import sqlite3
import threading
import time

from catalogcap.review.decisions import TURN_MS, Decisions, writer_engine
from catalogcap.store.captions import decide, get_caption
from catalogcap.store.database import read_session, write_session
from tests.factories import add_captions


def caption(engine, caption_id: int):
    with read_session(engine) as session:
        return get_caption(session, caption_id)[0]


def test_accept_edit_reject_keep_the_model_text_and_the_reviewer(engine) -> None:
    a, b, c, _ = add_captions(engine, 2)
    heard: list[tuple[list[int], str]] = []
    desk = Decisions(engine, "alice", on_reviewed=lambda ids, d: heard.append((ids, d)))
    assert desk.decide([(a, 1)], "accept").ids == [a]
    desk.decide([(b, 1)], "edit", text="  A red cotton shirt on white.  ")
    desk.decide([(c, 1)], "reject", reason="wrong product")
    accepted, edited, rejected = caption(engine, a), caption(engine, b), caption(engine, c)
    assert (accepted.state, accepted.reviewer, accepted.version) == ("accepted", "alice", 2)
    assert accepted.reviewed_at is not None
    assert (edited.state, edited.text) == ("edited", "A red cotton shirt on white.")
    assert edited.model_text == "A red cotton shirt, number 0, on white."
    assert (rejected.state, rejected.reject_reason) == ("rejected", "wrong product")
    assert heard == [([a], "accept"), ([b], "edit"), ([c], "reject")]


def test_undo_puts_back_exactly_what_was_there(engine) -> None:
    a, b, c, d = add_captions(engine, 2)
    desk = Decisions(engine, "alice")
    desk.decide([(a, 1)], "edit", text="Fixed")
    desk.decide([(b, 1), (c, 1), (d, 1)], "accept")  # a bulk accept is one undo step
    outcome = desk.undo()
    assert outcome.decision == "undo accept" and sorted(outcome.ids) == [b, c, d]
    assert {caption(engine, i).state for i in (b, c, d)} == {"pending"}
    assert caption(engine, b).reviewer is None and caption(engine, b).reviewed_at is None
    desk.undo()
    restored = caption(engine, a)
    assert (restored.state, restored.text, restored.reviewer) == ("pending", restored.model_text, None)
    assert desk.undo() is None and not desk.can_undo


def test_second_reviewer_gets_a_conflict_not_an_overwrite(engine) -> None:
    a, b, *_ = add_captions(engine, 1)
    alice, bob = Decisions(engine, "alice"), Decisions(engine, "bob")
    bob.decide([(a, 1)], "reject", reason="blurry")
    outcome = alice.decide([(a, 1), (b, 1)], "accept")  # alice still saw version 1 of both
    assert outcome.ids == [b]
    [(current, why)] = outcome.conflicts
    assert (current.id, current.state, current.reviewer) == (a, "rejected", "bob")
    assert "changed by bob" in why
    assert caption(engine, a).state == "rejected"


def test_undo_does_not_clobber_a_later_decision(engine) -> None:
    a, *_ = add_captions(engine, 1)
    alice = Decisions(engine, "alice")
    alice.decide([(a, 1)], "accept")
    with write_session(engine) as session:
        decide(session, a, "reject", reviewer="bob", expected_version=2)
    outcome = alice.undo()
    assert outcome.ids == [] and outcome.conflicts[0][0].reviewer == "bob"
    assert caption(engine, a).state == "rejected"


@pytest.mark.sqlite_only  # SQLite's one database-wide write lock
def test_deciding_while_the_daemon_holds_the_write_lock_waits_instead_of_failing(engine) -> None:
    a, *_ = add_captions(engine, 1)
    holding = threading.Event()

    def daemon_batch() -> None:
        with write_session(engine):
            holding.set()
            time.sleep(0.5)

    thread = threading.Thread(target=daemon_batch)
    thread.start()
    holding.wait()
    started = time.monotonic()
    assert Decisions(engine, "alice").decide([(a, 1)], "accept").ids == [a]
    assert time.monotonic() - started > 0.2  # it queued behind the daemon's transaction
    thread.join()


@pytest.mark.sqlite_only  # SQLite's one database-wide write lock
def test_a_busy_database_is_retried_in_short_turns_until_the_lock_is_free(engine) -> None:
    """The writer's own engine gives up each wait after TURN_MS and retries: a lock held ten
    times longer than one turn still ends in a saved decision, not "database is locked"."""
    a, *_ = add_captions(engine, 1)
    patient = writer_engine(engine)
    with patient.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == TURN_MS
    locker = sqlite3.connect(engine.url.database, isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN IMMEDIATE")
    release = threading.Timer(10 * TURN_MS / 1000, locker.commit)
    release.start()
    try:
        assert Decisions(patient, "alice").decide([(a, 1)], "accept").ids == [a]
    finally:
        release.join()
        locker.close()
        patient.dispose()
    assert caption(engine, a).state == "accepted"
