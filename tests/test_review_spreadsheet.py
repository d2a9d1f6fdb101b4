"""`catalogcap review export|import`: the spreadsheet round trip, all-or-nothing imports."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from catalogcap.cli import cli
from catalogcap.review.spreadsheet import COLUMNS
from catalogcap.store.captions import decide, get_caption
from catalogcap.store.database import read_session, write_session
from tests.factories import add_captions


def run(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def caption(engine, caption_id: int):
    with read_session(engine) as session:
        return get_caption(session, caption_id)[0]


def read_sheet(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as fp:
        return list(csv.DictReader(fp))


def write_sheet(path: Path, rows: list[dict[str, str]], *, header: tuple[str, ...] = COLUMNS) -> Path:
    """As a spreadsheet saves "CSV UTF-8": with a byte-order mark and CRLF line ends."""
    with open(path, "w", encoding="utf-8-sig", newline="") as fp:
        writer = csv.DictWriter(fp, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_export_decide_import_and_import_again(engine, tmp_path: Path) -> None:
    ids = add_captions(engine, 3)
    sheet = tmp_path / "review.csv"
    result = run("review", "export", "--csv", str(sheet), "--kind", "alt_text")
    assert "wrote 3 caption(s)" in result.stderr
    assert sheet.read_bytes().startswith(b"\xef\xbb\xbf")  # Excel reads it as UTF-8
    rows = read_sheet(sheet)
    assert list(rows[0]) == list(COLUMNS)
    assert [r["caption_id"] for r in rows] == [str(i) for i in ids[0::2]]
    assert rows[0] == {"caption_id": str(ids[0]), "path": "/catalog/images/item-0000.jpg", "kind": "alt_text",
                       "model_text": "A red shirt number 0", "final_text": "A red shirt number 0", "decision": ""}
    rows[0]["decision"] = "Accept "
    rows[1].update(decision="edit", final_text="A red shirt, «slim fit», number 1")
    rows[2]["decision"] = "reject"
    write_sheet(sheet, rows)

    result = run("review", "import", str(sheet), "--reviewer", "carol")
    assert "applied 3 decision(s) (accept 1, edit 1, reject 1); 0 already so" in result.stdout
    accepted, edited, rejected = (caption(engine, i) for i in ids[0::2])
    assert (accepted.state, accepted.reviewer) == ("accepted", "carol")
    assert (edited.state, edited.text, edited.model_text) == (
        "edited", "A red shirt, «slim fit», number 1", "A red shirt number 1")
    assert rejected.state == "rejected"
    listed = json.loads(run("captions", "list", "--state", "accepted", "--json").stdout)
    assert [c["id"] for c in listed] == [ids[0]]

    versions = [caption(engine, i).version for i in ids]
    again = run("review", "import", str(sheet), "--json")
    assert json.loads(again.stdout) == {"applied": {}, "unchanged": 3, "blank": 0, "skipped": []}
    assert [caption(engine, i).version for i in ids] == versions  # nothing was touched


def test_a_file_with_bad_rows_changes_nothing_and_names_every_line(engine, tmp_path: Path) -> None:
    ids = add_captions(engine, 3)
    rows = [
        {"caption_id": str(ids[0]), "decision": "accept"},  # good, but must not be applied
        {"caption_id": "99999", "decision": "accept"},
        {"caption_id": str(ids[2]), "decision": "approve"},
        {"caption_id": str(ids[4]), "decision": "edit", "final_text": "   "},
        {"caption_id": str(ids[0]), "decision": "reject"},
        {"caption_id": "x7", "decision": "reject"},
        {"caption_id": str(ids[2]), "decision": "edit", "final_text": "A" * 126},
        {"caption_id": str(ids[3]), "decision": "edit", "final_text": "A" * 400},  # a description may be long
        {"caption_id": "", "decision": ""},
        {"caption_id": "\u00b2", "decision": "accept"},  # a digit to str.isdigit, not to int()
        {"caption_id": "9" * 25, "decision": "accept"},  # past any database integer
    ]
    sheet = write_sheet(tmp_path / "bad.csv", rows)
    result = run("review", "import", str(sheet), code=1)
    assert "8 bad row(s), nothing was imported" in result.stderr and "Traceback" not in result.output
    assert "line 11: caption_id '\u00b2' is not a caption id" in result.stderr
    assert "line 12: caption_id '9999" in result.stderr
    for line, problem in [(3, "caption 99999 does not exist"), (4, "unknown decision 'approve'"),
                          (5, "an edit needs the corrected text"), (6, "decided again (first on line 2)"),
                          (7, "caption_id 'x7' is not a caption id"),
                          (8, "alt text is 126 characters, over the limit of 125")]:
        assert f"line {line}: " in result.stderr and problem in result.stderr, (line, result.stderr)
    assert {caption(engine, i).state for i in ids} == {"pending"}


def test_a_caption_decided_since_the_export_is_kept_unless_overwrite(engine, tmp_path: Path) -> None:
    ids = add_captions(engine, 1)
    sheet = tmp_path / "sheet.csv"
    run("review", "export", "--csv", str(sheet))
    rows = read_sheet(sheet)
    for row in rows:
        row["decision"] = "accept"
    write_sheet(sheet, rows)
    with write_session(engine) as session:
        decide(session, ids[0], "reject", reviewer="bob", reason="blurry")
    result = run("review", "import", str(sheet))
    assert "applied 1 decision(s) (accept 1)" in result.stdout
    assert f"caption {ids[0]} is already rejected by bob; kept" in result.stdout
    assert caption(engine, ids[0]).state == "rejected"
    run("review", "import", str(sheet), "--overwrite")
    assert caption(engine, ids[0]).state == "accepted"


def test_export_filters_and_standard_output(engine, tmp_path: Path) -> None:
    ids = add_captions(engine, 2)
    with write_session(engine) as session:
        decide(session, ids[0], "accept", reviewer="bob")
    out = run("review", "export", "--csv", "-", "--state", "accepted").stdout
    assert [row["caption_id"] for row in csv.DictReader(out.splitlines())] == [str(ids[0])]
    out = run("review", "export", "--csv", "-", "--state", "any", "--kind", "description").stdout
    assert len(out.splitlines()) == 3
    run("review", "export", "--csv", str(tmp_path / "nowhere" / "x.csv"), code=1)


@pytest.mark.parametrize(("content", "message"), [
    (b"caption_id,decision\n1,accept\n", "the header lacks final_text"),
    (b"", "is empty"),
    ("caption_id,final_text,decision\n1,Caf\xe9 cr\xe8me,edit\n".encode("cp1252"), "is not UTF-8 text"),
])
def test_unreadable_files_are_explained(engine, tmp_path: Path, content: bytes, message: str) -> None:
    sheet = tmp_path / "sheet.csv"
    sheet.write_bytes(content)
    assert message in run("review", "import", str(sheet), code=1).stderr


def test_the_app_without_a_terminal_points_to_the_spreadsheet(engine) -> None:
    assert "review export --csv FILE" in run("review", code=1).stderr
