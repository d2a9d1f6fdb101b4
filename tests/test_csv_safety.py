"""CSV in and out: no caption runs as a spreadsheet formula (CWE-1236) in any writer, the review
round trip stays lossless, `review import` refuses what is not a sane file, and `--out` / `--csv`
never replace a file silently."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from catalogcap import csvcells
from catalogcap.cli import cli
from catalogcap.cli.plugins import refuse_to_replace
from catalogcap.store.database import read_session
from catalogcap.store.models import Caption
from tests.conftest import make_image
from tests.plugin_support import add_image, add_reviewed

ROOT = Path(__file__).resolve().parents[1]
PAYLOADS = ['=HYPERLINK("http://evil.example","click")', "+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0",
            "-2+3+cmd|' /C calc'!A0", "\tTAB =1+1", "\r=1+1", "'=already quoted", "''+twice"]
# a review decision trims the text, so the round trip is exact for text without leading blanks
TRIMMED = [text for text in PAYLOADS if not text[0].isspace()]
DANGEROUS = tuple("=+-@\t\r")


def run(*args: str, code: int = 0):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output + result.stderr
    return result


def cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline="")))


def assert_inert(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            assert not cell.startswith(DANGEROUS), row


@pytest.mark.parametrize("text", [*PAYLOADS, "plain text", "", "a = b", "'quoted", "2+2"])
def test_neutralise_then_restore_is_lossless(text: str) -> None:
    safe = csvcells.neutralise(text)
    assert not safe.startswith(DANGEROUS)
    assert csvcells.restore(safe) == text
    assert csvcells.neutralise(7) == 7


@pytest.fixture
def evil(engine, tmp_path: Path) -> dict[str, int]:
    """Pending captions whose model text is each payload; returns payload -> alt-text caption id."""
    return {text: add_image(engine, make_image(tmp_path / "img" / f"p{i}.png", size=(8 + i, 8)),
                            {"alt_text": text, "description": f"desc {text}"})["alt_text"]
            for i, text in enumerate(TRIMMED)}


def test_review_export_is_inert_and_the_round_trip_is_lossless(home: Path, engine, evil, tmp_path: Path) -> None:
    sheet = tmp_path / "review.csv"
    run("review", "export", "--csv", str(sheet), "--kind", "alt_text")
    rows = cells(sheet.read_text(encoding="utf-8-sig"))
    assert_inert(rows)
    header = rows[0]
    for row in rows[1:]:
        row[header.index("decision")] = "accept"
    with open(sheet, "w", encoding="utf-8-sig", newline="") as out:
        csv.writer(out).writerows(rows)
    run("review", "import", str(sheet), "--reviewer", "ann")
    with read_session(engine) as session:
        for text, caption_id in evil.items():
            caption = session.get(Caption, caption_id)
            assert (caption.text, caption.state) == (text, "accepted")  # not "'" + text, not "edited"


def test_every_exporter_writes_inert_cells(home: Path, engine, tmp_path: Path) -> None:
    for i, text in enumerate(PAYLOADS):
        add_reviewed(engine, make_image(tmp_path / "shop" / f"item-{i}.jpg", size=(8 + i, 8)), text)
    stored = {text.strip() for text in PAYLOADS}  # a review decision trims; "=1+1" must still be inert
    plain = run("export", "csv", "--state", "edited").stdout
    assert len(cells(plain)) == len(PAYLOADS) + 1
    assert_inert(cells(plain))
    fresh = tmp_path / "fresh.csv"
    run("export", "shopify", "--out", str(fresh))
    assert_inert(cells(fresh.read_text(encoding="utf-8")))
    assert {csvcells.restore(row[3]) for row in cells(fresh.read_text(encoding="utf-8"))[1:]} == stored
    export = tmp_path / "products_export.csv"
    export.write_text("Handle,Image Src,Image Position,Image Alt Text\n" + "".join(
        f"item-{i},https://cdn.example/item-{i}.jpg,1,\n" for i in range(len(PAYLOADS))), encoding="utf-8")
    filled = tmp_path / "filled.csv"
    run("export", "shopify", "-o", f"input={export}", "--out", str(filled))
    rows = cells(filled.read_text(encoding="utf-8"))
    assert_inert(rows)
    assert {csvcells.restore(row[3]) for row in rows[1:]} == stored


def catalogcap(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CATALOGCAP_HOME": str(home),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "catalogcap", *args], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def test_review_import_refuses_devices_fifos_and_endless_lines(home: Path, engine, tmp_path: Path) -> None:
    fifo = tmp_path / "sheet.csv"
    os.mkfifo(fifo)
    long_line = tmp_path / "long.csv"
    long_line.write_text("caption_id,final_text,decision\n1," + "x" * (2**20 + 10) + ",accept\n")
    cases = [("/dev/zero", "not a regular file (it is a device)"), (str(fifo), "not a regular file (it is a FIFO)"),
             (str(long_line), "line 2 is longer than 1,048,576 characters")]
    for path, reason in cases:
        started = time.monotonic()
        done = catalogcap(home, "review", "import", path)
        assert time.monotonic() - started < 30
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert reason in done.stderr and path in done.stderr


def test_out_and_csv_refuse_to_replace_a_file_without_force(home: Path, engine, tmp_path: Path) -> None:
    add_reviewed(engine, make_image(tmp_path / "a.jpg", size=(8, 8)), "Red shirt")
    kept = tmp_path / "kept.jsonl"
    kept.write_text("precious\n")
    result = run("export", "jsonl", "--out", str(kept), code=1)
    assert f"{kept} already exists" in result.stderr and "--force" in result.stderr
    assert kept.read_text() == "precious\n"
    report = json.loads(run("export", "jsonl", "--out", str(kept), "--force", "--json").stdout)
    assert report["written"] == 1 and "Red shirt" in kept.read_text()
    refuse_to_replace(tmp_path, force=False)  # a folder is where an exporter writes its files: allowed
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("mine\n")
    result = run("review", "export", "--csv", str(sheet), code=1)
    assert f"{sheet} already exists" in result.stderr and sheet.read_text() == "mine\n"
    run("review", "export", "--csv", str(sheet), "--force")
    assert sheet.read_text(encoding="utf-8-sig").startswith("caption_id")
