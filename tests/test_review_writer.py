"""The review app's writer without the UI: what it posts when a write fails, and undo history."""

from __future__ import annotations

import sqlalchemy as sa
from textual.message import Message

from catalogcap.review import decisions as decisions_module
from catalogcap.review.messages import WriteFailed, Written
from catalogcap.review.writer import Writer
from catalogcap.store.database import read_session
from catalogcap.store.models import Caption
from tests.factories import add_captions


def state(engine, caption_id: int) -> str:
    with read_session(engine) as session:
        return session.get(Caption, caption_id).state


def test_a_rule_refusal_is_posted_as_write_failed_and_saves_nothing(engine) -> None:
    [first, *_] = add_captions(engine, 1)
    posted: list[Message] = []
    heard: list[tuple[list[int], str]] = []
    writer = Writer(engine, "ann", posted.append, lambda ids, d: heard.append((ids, d)), alt_text_limit=10)
    writer.decide([(first, 1)], "edit", text="far longer than ten characters")
    writer.close()
    [failed] = posted
    assert isinstance(failed, WriteFailed) and failed.ids == [first]
    assert "over the limit of 10" in failed.error
    assert state(engine, first) == "pending" and heard == [] and not writer.decisions.can_undo


def test_a_failed_undo_keeps_its_history_entry(engine, monkeypatch) -> None:
    first, second = add_captions(engine, 1)[0], add_captions(engine, 1, start=1)[0]
    posted: list[Message] = []
    heard: list[tuple[list[int], str]] = []
    writer = Writer(engine, "ann", posted.append, lambda ids, d: heard.append((ids, d)))
    real = decisions_module.restore_together
    calls = 0

    def refused_once(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise sa.exc.OperationalError("UPDATE captions", {}, Exception("disk I/O error"))
        return real(*args, **kwargs)

    monkeypatch.setattr(decisions_module, "restore_together", refused_once)
    writer.decide([(first, 1)], "accept")
    writer.decide([(second, 1)], "reject", reason="blurry")
    writer.undo()  # refused by the database: nothing undone, the reject stays on top of the history
    writer.undo()  # undoes the reject, not the accept
    writer.close()
    kinds = [type(m).__name__ for m in posted]
    assert kinds == ["Written", "Written", "WriteFailed", "Written"]
    assert "disk I/O error" in posted[2].error
    undone = posted[3]
    assert isinstance(undone, Written) and undone.outcome.decision == "undo reject"
    assert state(engine, second) == "pending" and state(engine, first) == "accepted"
    assert writer.decisions.can_undo  # the accept is still there to undo
    assert heard == [([first], "accept"), ([second], "reject"), ([second], "undo")]
