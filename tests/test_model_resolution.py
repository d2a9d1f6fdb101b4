"""Model resolution fails fast: real subprocesses with no network (a closed local port as the hub)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlmodel import select

from catalogcap.captioner.model import check_model_folder
from catalogcap.errors import ModelLoadError
from catalogcap.settings import load_settings
from catalogcap.store.database import create_store_engine, read_session
from catalogcap.store.models import Job

ROOT = Path(__file__).resolve().parents[1]
HUB_ID = "Salesforce/blip-image-captioning-base"


def _env(home: Path, model: str, **extra: str) -> dict[str, str]:
    """Online as far as huggingface_hub knows, but its endpoint is a closed port: fails at once, offline-safe."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update({"CATALOGCAP_HOME": str(home), "CATALOGCAP_MODEL": model, "HF_ENDPOINT": "http://127.0.0.1:9",
                "HF_HOME": str(home / "hf"), "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])})
    env.update(extra)
    return env


def _run(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "catalogcap", *args], env=env, capture_output=True, text=True,
                          timeout=60)
    return done, time.monotonic() - start


def _jobs(home: Path) -> list[tuple[int, str, int, str | None]]:
    engine = create_store_engine(load_settings({"home": str(home)}).db_url)
    try:
        with read_session(engine) as session:
            return [(j.id, j.state, j.attempts, j.last_error)
                    for j in session.exec(select(Job).order_by(Job.id)).all()]
    finally:
        engine.dispose()


@pytest.mark.parametrize("command", [["scan", "{photos}"], ["watch", "{photos}"],
                                     ["caption", "{photos}/red-shirt.jpg"], ["train", "--force"],
                                     ["serve", "--port", "{port}"]])
def test_hub_id_without_network_exits_1_in_seconds_with_one_line(home: Path, photos: Path, tiny_model_dir: Path,
                                                                  command: list[str]) -> None:
    queued, _ = _run(_env(home, str(tiny_model_dir)), "scan", "--no-caption", "--json", str(photos))
    assert queued.returncode == 0, queued.stderr
    before = _jobs(home)
    assert len(before) == 4 and all(state == "pending" for _, state, _, _ in before)

    with socket.socket() as probe:  # a free port, for serve
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done, took = _run(_env(home, HUB_ID), *[part.format(photos=photos, port=port) for part in command])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, done.stderr
    assert took < 15, f"took {took:.1f}s"
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: cannot reach the Hugging Face hub")
    assert "CATALOGCAP_MODEL" in lines[0] and "connected machine" in lines[0]
    assert done.stdout == ""
    assert _jobs(home) == before, "jobs stay pending, untouched"


def test_local_folder_without_weights_is_one_clear_line(home: Path, photos: Path, tiny_model_dir: Path,
                                                        tmp_path: Path) -> None:
    folder = tmp_path / "no-weights"
    shutil.copytree(tiny_model_dir, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    done, took = _run(_env(home, str(folder)), "scan", str(photos))
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0] == (f"error: model folder {folder} is not a complete BLIP model:"
                        " missing safetensors weights (*.safetensors)")
    assert took < 15
    assert _jobs(home) == [], "nothing was registered before the model was checked"


def test_init_warns_about_an_unreachable_model_but_succeeds(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    done, took = _run(_env(home, HUB_ID), "init")
    assert done.returncode == 0, done.stderr
    assert took < 15
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: cannot reach the Hugging Face hub"), done.stderr
    assert (home / "catalogcap.toml").exists()


def test_a_complete_cached_copy_is_used_when_the_hub_is_unreachable(tmp_path: Path, tiny_model_dir: Path) -> None:
    home = tmp_path / "h"
    snapshot = home / "hf" / "hub" / "models--Example--tiny-blip" / "snapshots" / ("a" * 40)
    shutil.copytree(tiny_model_dir, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("a" * 40)
    code = ("import json; from catalogcap.captioner.model import resolve_model;"
            " print(json.dumps(str(resolve_model('Example/tiny-blip'))))")
    env = _env(home, "Example/tiny-blip")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert Path(json.loads(done.stdout)) == snapshot
    partial = home / "hf" / "hub" / "models--Example--partial" / "snapshots" / ("b" * 40)
    shutil.copytree(tiny_model_dir, partial, ignore=shutil.ignore_patterns("tokenizer*"))
    (partial.parents[1] / "refs").mkdir()
    (partial.parents[1] / "refs" / "main").write_text("b" * 40)
    code = code.replace("Example/tiny-blip", "Example/partial")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "cannot reach the Hugging Face hub" in done.stderr


def test_check_model_folder_names_everything_missing(tmp_path: Path, tiny_model_dir: Path) -> None:
    assert check_model_folder(tiny_model_dir) == tiny_model_dir
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelLoadError) as caught:
        check_model_folder(tmp_path)
    message = str(caught.value)
    assert "safetensors weights" in message and "tokenizer" in message and "processor config" in message
    assert "config (config.json)" not in message and "pickled .bin weights" in message


def test_a_worker_whose_model_will_not_load_touches_no_job_and_says_so_once(
        home: Path, photos: Path, tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import threading

    from catalogcap.intake import scan
    from catalogcap.worker import Worker

    folder = tmp_path / "no-weights"
    shutil.copytree(tiny_model_dir, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    settings = load_settings({"model": str(folder)})
    engine = create_store_engine(settings.db_url)
    scan(engine, [photos], settings)
    before = _jobs(home)
    worker = Worker(engine, settings)  # as `catalogcap serve` runs it
    stop, wake = threading.Event(), threading.Event()
    loop = threading.Thread(target=worker.run_until, args=(stop, wake))
    with caplog.at_level(logging.ERROR, logger="catalogcap.worker"):
        loop.start()
        try:
            deadline = time.monotonic() + 30
            while worker.errors < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            stop.set()
            wake.set()
            loop.join(30)
            worker.close()
            engine.dispose()
    assert worker.errors >= 2
    said = [r.getMessage() for r in caplog.records if r.name == "catalogcap.worker"]
    assert len(said) == 1 and "missing safetensors weights" in said[0] and not caplog.records[0].exc_info
    assert _jobs(home) == before and all(job[1:] == ("pending", 0, None) for job in before)


def test_a_hub_that_answers_with_errors_is_one_line_without_request_logs(home: Path, photos: Path) -> None:
    import http.server
    import threading

    class Down(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_HEAD = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Down)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = _env(home, HUB_ID, HF_ENDPOINT=f"http://127.0.0.1:{server.server_port}",
                   CATALOGCAP_LOG_LEVEL="DEBUG")
        done, took = _run(env, "scan", str(photos))
    finally:
        server.shutdown()
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and took < 15
    assert len(lines) == 1 and lines[0].startswith("error: cannot look up model"), done.stderr
