"""Hostile folder contents: FIFOs, device symlinks and unreadable folders, through real processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import select

from catalogcap.fingerprint import NotRegularFile, fingerprint_file
from catalogcap.intake import NOT_REGULAR, register_file
from catalogcap.settings import load_settings
from catalogcap.store.database import create_store_engine, read_session
from catalogcap.store.models import Asset, AssetPath, Job
from tests.conftest import make_image
from tests.factories import poll

ROOT = Path(__file__).resolve().parents[1]
NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _catalogcap(*args: str, prefix: list[str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*(prefix or []), sys.executable, "-m", "catalogcap", *args], env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def _hostile(folder: Path) -> None:
    os.mkfifo(folder / "fifo.jpg")
    (folder / "zero.jpg").symlink_to("/dev/zero")




def test_fingerprint_refuses_fifos_and_devices_without_blocking(tmp_path: Path) -> None:
    _hostile(tmp_path)
    for name in ("fifo.jpg", "zero.jpg"):
        with pytest.raises(NotRegularFile, match="not a regular file"):
            fingerprint_file(tmp_path / name)
    good = make_image(tmp_path / "ok.png")
    assert len(fingerprint_file(good)) == 64


def test_register_rejects_a_fifo_before_reading_it(engine, settings, tmp_path: Path) -> None:
    _hostile(tmp_path)
    for name in ("fifo.jpg", "zero.jpg"):
        item = register_file(engine, tmp_path / name, settings)
        assert (item.outcome, item.reason, item.asset_id) == ("rejected", NOT_REGULAR, None)


def test_scan_rejects_fifo_and_device_symlink_and_finishes(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    _hostile(folder)
    make_image(folder / "shirt.jpg")
    done = _catalogcap("scan", str(folder), "--json", "--no-caption", timeout=60)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["new"] == 1 and summary["rejected"] == 2
    assert {Path(r["path"]).name: r["reason"] for r in summary["rejections"]} == {
        "fifo.jpg": NOT_REGULAR, "zero.jpg": NOT_REGULAR}
    named = _catalogcap("scan", str(folder / "fifo.jpg"), "--json", "--no-caption", timeout=60)
    assert named.returncode == 0, named.stderr
    assert [r["reason"] for r in json.loads(named.stdout)["rejections"]] == [NOT_REGULAR]


def test_daemon_survives_fifos_at_start_and_after_and_stops_on_sigterm(home: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALOGCAP_WATCH__QUIET_SECONDS", "0.3")
    monkeypatch.setenv("CATALOGCAP_QUEUE__MAX_WAIT_SECONDS", "0.1")
    monkeypatch.setenv("CATALOGCAP_GENERATION__DESCRIPTION__NUM_BEAMS", "1")
    monkeypatch.setenv("CATALOGCAP_GENERATION__ALT_TEXT__NUM_BEAMS", "1")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _hostile(inbox)
    make_image(inbox / "before.jpg", "red")
    proc = subprocess.Popen([sys.executable, "-m", "catalogcap", "watch", "--no-training", str(inbox)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    engine = create_store_engine(load_settings().db_url)
    try:
        log = home / "logs" / "watch.log"

        def ready() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            return log.exists() and "watching" in log.read_text()

        poll(ready, 90, "the daemon to get past reconciliation")
        os.mkfifo(inbox / "late-fifo.png")
        (inbox / "late-zero.png").symlink_to("/dev/zero")
        # the late hostile names are handled (and reported) first: a stuck arrivals thread would
        # then never register the next file
        poll(lambda: log.read_text().count("not a regular file") >= 4, 60, "all four hostile names reported")
        make_image(inbox / "after.png", "blue")

        def both_captioned() -> bool:
            with read_session(engine) as session:
                done = session.exec(select(Job).where(Job.state == "done")).all()
                names = {Path(p).name for p in session.exec(select(AssetPath.path)).all()}
            return len(done) == 2 and names == {"before.jpg", "after.png"}

        poll(both_captioned, 90, "the files before and after the FIFOs to be captioned")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        engine.dispose()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux) to drop DAC override")
def test_unreadable_registered_folder_does_not_abort_scan_and_new_ones_are_reported(home: Path,
                                                                                    tmp_path: Path) -> None:
    catalog = tmp_path / "p"
    make_image(catalog / "top.jpg", "red")
    make_image(catalog / "sub" / "inside.jpg", "blue")
    first = _catalogcap("scan", str(catalog), "--json", "--no-caption")
    assert first.returncode == 0 and json.loads(first.stdout)["new"] == 2, first.stderr
    make_image(catalog / "later" / "hidden.jpg", "green")
    (catalog / "sub").chmod(0)
    (catalog / "later").chmod(0)
    try:
        probe = subprocess.run([*NO_DAC, "ls", str(catalog / "sub")], capture_output=True)
        if probe.returncode == 0:
            pytest.skip("dropping DAC override has no effect here")
        again = _catalogcap("scan", str(catalog), "--json", "--no-caption", prefix=NO_DAC)
        daemon = subprocess.Popen([*NO_DAC, sys.executable, "-m", "catalogcap", "watch", "--no-training",
                                   str(catalog)], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True)
        try:
            log = home / "logs" / "watch.log"

            def watching() -> bool:
                assert daemon.poll() is None, daemon.stderr.read() if daemon.stderr else ""
                return log.exists() and "watching" in log.read_text()

            poll(watching, 90, "the daemon to start despite the unreadable folders")
            assert log.read_text().count("unreadable folder: Permission denied") == 2
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(30) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
    finally:
        (catalog / "sub").chmod(0o755)
        (catalog / "later").chmod(0o755)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["missing"] == 0 and summary["unchanged"] == 1
    reported = {Path(f["path"]).name: f["reason"] for f in summary["unreadable_folders"]}
    assert set(reported) == {"sub", "later"}
    assert all(reason.startswith("unreadable folder: Permission denied") for reason in reported.values())
    engine = create_store_engine(load_settings().db_url)
    try:
        with read_session(engine) as session:
            assert all(a.missing_since is None for a in session.exec(select(Asset)).all())
            assert all(not p.missing for p in session.exec(select(AssetPath)).all())
    finally:
        engine.dispose()
