"""One length rule, in the store's `decide`, for every way a decision comes in (the API has its
own test in test_api_hardening.py, the spreadsheet in test_review_spreadsheet.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from catalogcap.review.decisions import Decisions
from catalogcap.store.captions import DESCRIPTION_LIMIT, TextTooLong, decide
from catalogcap.store.database import read_session, write_session
from catalogcap.store.models import Caption
from tests.factories import seed

ROOT = Path(__file__).resolve().parents[1]


def test_the_cli_refuses_alt_text_over_the_limit_in_one_line(home: Path, engine) -> None:
    seed(engine, 1)
    env = {**os.environ, "CATALOGCAP_HOME": str(home),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "catalogcap", "--set", "alt_text_limit=100", "captions", "edit",
                           "1", "a" * 359], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == ("error: caption 1: alt text is 359 characters, over the limit of 100"
                                   " (the alt_text_limit setting); shorten it")
    with read_session(engine) as session:
        assert session.get(Caption, 1).state == "pending"


def test_decide_refuses_accepts_and_edits_over_the_limit_but_not_rejects(engine) -> None:
    seed(engine, 1)
    with write_session(engine) as session, pytest.raises(TextTooLong, match="over the limit of 20") as caught:
        decide(session, 1, "accept", reviewer="ann", alt_text_limit=20, text="a much longer alt text than twenty")
    assert caught.value.limit == 20
    with write_session(engine) as session, pytest.raises(TextTooLong):  # the model's text, limit lowered since
        decide(session, 1, "accept", reviewer="ann", alt_text_limit=5)
    with write_session(engine) as session, pytest.raises(TextTooLong, match=f"limit of {DESCRIPTION_LIMIT}"):
        decide(session, 2, "edit", reviewer="ann", text="long " * 300)
    with write_session(engine) as session:
        assert decide(session, 1, "reject", reviewer="ann", alt_text_limit=5).state == "rejected"


def test_the_review_apps_writer_gets_the_same_rule(engine) -> None:
    seed(engine, 1)
    decisions = Decisions(engine, "ann", alt_text_limit=30)
    with pytest.raises(TextTooLong, match="over the limit of 30"):
        decisions.decide([(1, 1)], "edit", text="x" * 31)
    assert not decisions.can_undo
    assert decisions.decide([(1, 1)], "edit", text="x" * 30).saved[0].state == "edited"
