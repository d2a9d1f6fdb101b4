"""Real HTTP against uvicorn on 127.0.0.1, with the tiny BLIP captioning in the server's worker thread:
upload -> long-poll for captions -> review -> incremental sync; a concurrent review; `catalogcap serve`."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn
from PIL import Image

from catalogcap.api.app import create_app
from catalogcap.api.tokens import create_token

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def jpeg(color: str, size: tuple[int, int] = (96, 72)) -> bytes:
    image = Image.new("RGB", size, "white")
    image.paste(Image.new("RGB", (size[0] // 2, size[1] // 2), color), (size[0] // 4, size[1] // 4))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
def server(settings, engine) -> Iterator[str]:
    """The API with its worker thread, served by uvicorn on a loopback port picked by the kernel."""
    settings.queue.max_wait_seconds = 0.0
    settings.api.max_wait_seconds = 180.0  # a loaded CI machine captions slowly; the wait ends early anyway
    app = create_app(settings, engine, run_worker=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(60)
    sock.close()


def test_upload_wait_review_sync_over_http(server: str, engine) -> None:
    review = {"Authorization": f"Bearer {create_token(engine, 'shop', 'review').secret}"}
    reader = {"Authorization": f"Bearer {create_token(engine, 'feed', 'read').secret}"}
    with httpx.Client(base_url=server, timeout=200) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        before = http.get("/v1/captions", headers=reader).json()
        assert before["items"] == []
        fingerprints = []
        for color in ("red", "blue", "green"):
            sent = time.monotonic()
            added = http.post("/v1/images", headers=review, files={"file": (f"{color}.jpg", jpeg(color), "image/jpeg")})
            assert added.status_code == 202, added.text
            fp = added.json()["fingerprint"]
            fingerprints.append(fp)
            got = http.get(f"/v1/images/{fp}/captions", headers=reader, params={"wait": 180}).json()
            print(f"upload-to-captions {color}: {time.monotonic() - sent:.2f}s")
            assert got["image"]["state"] == "captioned" and got["image"]["job"]["state"] == "done"
            assert {c["kind"] for c in got["captions"]} == {"alt_text", "description"}
            assert all(c["text"] and c["model"] and c["state"] == "pending" for c in got["captions"])
        again = http.post("/v1/images", headers=review, files={"file": ("copy.jpg", jpeg("red"), "image/jpeg")})
        assert again.status_code == 200 and again.json()["fingerprint"] == fingerprints[0]

        page = http.get("/v1/captions", headers=reader, params={"cursor": before["next_cursor"]}).json()
        assert len(page["items"]) == 6 and not page["has_more"]
        cursor = page["next_cursor"]
        alt = {c["fingerprint"]: c for c in page["items"] if c["kind"] == "alt_text"}
        red, blue, green = (alt[fp] for fp in fingerprints)
        decisions = [(red, {"decision": "accept"}), (blue, {"decision": "edit", "text": "blue square on white"}),
                     (green, {"decision": "reject", "reason": "wrong colour"})]
        for caption, body in decisions:
            done = http.post(f"/v1/captions/{caption['id']}/review", json=body,
                             headers={**review, "If-Match": f'"{caption["version"]}"'})
            assert done.status_code == 200, done.text
        synced = http.get("/v1/captions", headers=reader, params={"cursor": cursor}).json()
        assert [(c["id"], c["state"]) for c in synced["items"]] == [
            (red["id"], "accepted"), (blue["id"], "edited"), (green["id"], "rejected")]
        accepted = http.get("/v1/captions", headers=reader, params={"state": "edited"}).json()["items"]
        assert [c["text"] for c in accepted] == ["blue square on white"]

        status = http.get("/v1/status", headers=reader).json()
        assert status["assets"] == 3 and status["jobs"]["done"] == 3
        assert status["worker"] == {"running": True, "captioned": 3, "errors": 0}
        metrics = http.get("/metrics", headers=reader).text
        assert "catalogcap_caption_latency_seconds_count 3.0\n" in metrics
        assert 'catalogcap_queue_jobs{state="pending"} 0.0\n' in metrics


def test_concurrent_reviews_one_wins(server: str, engine) -> None:
    from catalogcap.store.captions import save_model_captions
    from catalogcap.store.database import write_session
    from catalogcap.store.models import Asset

    with write_session(engine) as session:
        asset = Asset(fingerprint="a" * 64, size=1, state="captioned")
        session.add(asset)
        session.flush()
        save_model_captions(session, asset.id, {"alt_text": "a mug", "description": "a white mug"}, model="tiny",
                            adapter_id=None, generation={"alt_text": {}, "description": {}})
    tokens = [create_token(engine, f"editor{i}", "review").secret for i in range(8)]

    def decide(secret: str) -> int:
        with httpx.Client(base_url=server, timeout=60) as http:
            return http.post("/v1/captions/1/review", json={"decision": "edit", "text": f"mug {secret[-4:]}"},
                             headers={"Authorization": f"Bearer {secret}", "If-Match": '"1"'}).status_code

    with ThreadPoolExecutor(len(tokens)) as pool:
        statuses = sorted(pool.map(decide, tokens))
    assert statuses == [200] + [409] * 7


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_command_binds_loopback_and_stops_on_sigterm(home: Path, engine) -> None:
    secret = create_token(engine, "ops", "read").secret
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "catalogcap", "serve", "--port", str(port), "--no-worker"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.2)
        answer = httpx.get(f"http://127.0.0.1:{port}/v1/status", headers={"Authorization": f"Bearer {secret}"})
        assert answer.json()["worker"]["running"] is False
        listening = [line for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                     if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A"]
        assert [line.split()[1] for line in listening] == [f"0100007F:{port:04X}"]  # 127.0.0.1 only
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0  # a graceful stop, exit code 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read()
    assert f"http://127.0.0.1:{port}" in stderr and "Application shutdown complete" in stderr
