"""Schemathesis against /openapi.json of a live server: no 5xx, every answer as documented,
invalid input refused, valid input accepted, auth enforced (all of its checks, ~1 minute)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from catalogcap.api.app import create_app
from catalogcap.api.tokens import create_token
from catalogcap.store.captions import save_model_captions
from catalogcap.store.database import write_session
from catalogcap.store.models import Asset

pytestmark = pytest.mark.slow

# Each relaxation says why the schema cannot express it.
CONFIG = """\
[checks.missing_required_header]
# RFC 6585: a conditional write without If-Match is 428 Precondition Required.
expected-statuses = ["400", "401", "403", "406", "415", "422", "428"]

[[operations]]
# Whether uploaded bytes are an image within the pixel budget is not a schema property.
include-name = "POST /v1/images"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "413", "415", "422"]

[[operations]]
# A text's limit depends on the caption's kind (alt text or description), which the path id
# names but the schema cannot: an edit longer than that kind's limit is 422 text_too_long.
include-name = "POST /v1/captions/{caption_id}/review"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "428"]

[[operations]]
# A cursor is opaque: only one this API issued decodes.
include-name = "GET /v1/captions"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "422"]
"""


def test_schemathesis_finds_nothing(settings, engine, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    settings.api.roots = [catalog]
    settings.api.max_wait_seconds = 0.2  # generated ?wait= values must not stall the run
    with write_session(engine) as session:
        for n in range(3):
            asset = Asset(fingerprint=f"{n:064x}", size=1, state="captioned")
            session.add(asset)
            session.flush()
            save_model_captions(session, asset.id, {"alt_text": "a red shirt", "description": "a red shirt on white"},
                                model="tiny", adapter_id=None, generation={"alt_text": {}, "description": {}})
    secret = create_token(engine, "schemathesis", "admin").secret
    app = create_app(settings, engine, run_worker=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive()
        time.sleep(0.02)
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    try:
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "--config-file", str(tmp_path / "schemathesis.toml"), "run",
             f"http://127.0.0.1:{port}/openapi.json", "--header", f"Authorization: Bearer {secret}",
             "--checks", "all", "--max-examples", "25", "--max-time", "45", "--seed", "20261128",
             "--workers", "2", "--no-color"],
            cwd=tmp_path, capture_output=True, text=True, timeout=240,
        )
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
    summary = run.stdout[run.stdout.find("SUMMARY"):] if "SUMMARY" in run.stdout else run.stdout[-3000:]
    print(summary)
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    assert "Selected: 10/10" in run.stdout and " passed" in run.stdout
