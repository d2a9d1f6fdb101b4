"""`catalogcap scan`, `caption`, `captions`, `status`, `config show` through click's runner and a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from catalogcap.cli import cli
from tests.conftest import make_image


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output + (result.stderr if hasattr(result, "stderr") else "")
    return result.output


def run_json(*args: str):
    return json.loads(run(*args, "--json"))


def _bomb(path: Path) -> Path:
    """A PNG header claiming 100000 x 100000 pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture
def mixed(photos: Path) -> Path:
    """Good photos of several formats plus the usual bad input."""
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "notes.jpg").write_text("this is not an image\n")
    good = (photos / "red-shirt.jpg").read_bytes()
    (photos / "truncated.jpg").write_bytes(good[: len(good) // 2])
    _bomb(photos / "bomb.png")
    (photos / ".partial.jpg.XyZ123").write_bytes(good)  # rsync temp name: ignored
    return photos


def test_scan_mixed_folder_then_rescan_captions_nothing(home: Path, mixed: Path) -> None:
    run("init")
    first = run_json("scan", str(mixed))
    assert first["found"] == 8
    assert first["new"] >= 4  # a truncated file may pass the header probe and fail at decode
    assert first["captioned"] == 4
    reasons = {Path(r["path"]).name: r["reason"] for r in first["rejections"]}
    assert set(reasons) == {"empty.jpg", "notes.jpg", "truncated.jpg", "bomb.png"}
    assert reasons["empty.jpg"].startswith("empty")
    assert "not an image" in reasons["notes.jpg"]
    assert "pixels" in reasons["bomb.png"]
    assert "truncated" in reasons["truncated.jpg"] or "corrupt" in reasons["truncated.jpg"]
    assert first["rejected"] == 4
    second = run_json("scan", str(mixed))
    assert (second["new"], second["captioned"], second["unchanged"]) == (0, 0, 8)
    captions = run_json("captions", "list")
    assert len(captions) == 8
    assert {c["kind"] for c in captions} == {"alt_text", "description"}
    assert set(captions[0]) >= {"id", "asset_id", "path", "kind", "text", "model_text", "state", "model", "adapter"}
    assert all(c["state"] == "pending" and c["text"] == c["model_text"] for c in captions)
    status = run_json("status")
    assert status["assets"] == 8 and status["captions"]["pending"] == 8
    assert status["jobs"]["done"] == 4 and status["adapter"] is None


def test_moved_duplicate_and_changed_files(home: Path, photos: Path, tmp_path: Path) -> None:
    run_json("scan", str(photos))
    shutil.move(photos / "red-shirt.jpg", photos / "sub" / "renamed.jpg")
    shutil.copy(photos / "blue-mug.png", photos / "copy-of-mug.png")
    make_image(photos / "green-shoe.webp", "purple")  # same name, new bytes
    report = run_json("scan", str(photos))
    assert report["moved"] == 1 and report["duplicates"] == 1 and report["changed"] == 1
    assert report["captioned"] == 1 and report["missing"] == 1
    status = run_json("status")
    # the shirt moved (its asset lives on); the shoe's old bytes, overwritten in place and never
    # reviewed, are superseded by the new version: kept as history (their captions superseded), not
    # a missing image, and no pathless pending caption
    assert status["assets"] == 5 and status["missing"] == 0, status
    assert status["captions"]["superseded"] == 2 and status["orphaned"] == 0, status


def test_a_file_name_that_is_not_utf8_is_rejected_and_the_rest_captioned(home: Path, photos: Path) -> None:
    latin1 = os.fsencode(photos) + b"/caf\xe9-shirt.jpg"
    shutil.copy(photos / "red-shirt.jpg", latin1)
    report = run_json("scan", str(photos))
    assert report["captioned"] == report["found"] - 1 and report["rejected"] == 1
    (bad,) = report["rejections"]
    assert "caf\ufffd-shirt.jpg" in bad["path"] and "not valid UTF-8" in bad["reason"]
    assert "not valid UTF-8" in run("scan", str(photos))  # the table prints too
    os.unlink(latin1)
    assert run_json("scan", str(photos))["rejected"] == 0


def test_caption_command_does_not_touch_the_database(home: Path, photos: Path) -> None:
    (photos / "bad.jpg").write_text("nope")
    result = CliRunner().invoke(cli, ["caption", str(photos / "red-shirt.jpg"), str(photos / "bad.jpg"), "--json"])
    assert result.exit_code == 1
    items = json.loads(result.stdout)
    assert set(items[0]) == {"path", "alt_text", "description"}
    assert "bad.jpg" in items[1]["error"]
    assert not (home / "catalogcap.db").exists()


def test_usage_and_user_errors_exit_codes(home: Path) -> None:
    assert CliRunner().invoke(cli, ["scan"]).exit_code == 2
    assert CliRunner().invoke(cli, ["no-such-command"]).exit_code == 2
    result = CliRunner().invoke(cli, ["--set", "device=tpu", "status"])
    assert result.exit_code == 1
    assert "device" in result.stderr and "tpu" in result.stderr and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["captions", "show", "999"])
    assert result.exit_code == 1 and "caption 999 does not exist" in result.stderr
    result = CliRunner().invoke(cli, ["--home", "/proc/no-such-home", "init"])
    assert result.exit_code == 1 and "/proc/no-such-home" in result.stderr and "Traceback" not in result.output


def test_config_show_reports_sources(home: Path) -> None:
    (home / "catalogcap.toml").write_text("batch_size = 3\n")
    data = run_json("--set", "alt_text_limit=99", "config", "show")
    assert data["batch_size"] == {"value": 3, "source": f"file {home / 'catalogcap.toml'}"}
    assert data["alt_text_limit"] == {"value": 99, "source": "command line"}
    assert data["model"]["source"] == "env CATALOGCAP_MODEL"
    assert data["device"]["source"] == "default"


def test_review_commands_and_show(home: Path, photos: Path) -> None:
    run_json("scan", str(photos))
    first = run_json("captions", "list", "--kind", "alt_text")[0]
    run("captions", "edit", str(first["id"]), "Red cotton shirt", "--reviewer", "ann")
    shown = run_json("captions", "show", str(first["id"]))
    assert (shown["state"], shown["text"], shown["reviewer"]) == ("edited", "Red cotton shirt", "ann")
    assert shown["model_text"] == first["model_text"]
    assert shown["generation"]["model"] == os.environ["CATALOGCAP_MODEL"]
    assert run_json("captions", "list", "--state", "edited")[0]["id"] == first["id"]


def test_real_subprocess_scan(home: Path, photos: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-m", "catalogcap", "scan", str(photos), "--json"], env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["captioned"] == 4
    bad = subprocess.run([sys.executable, "-m", "catalogcap", "--set", "batch_size=0", "status"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "batch_size" in bad.stderr and "Traceback" not in bad.stderr
