"""Shared test factories: seeded stores, API helpers, review app drivers, a webhook receiver.

Test modules import these from here, never from one another.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from textual.widgets import TextArea

from catalogcap.api.tokens import create_token
from catalogcap.review.app import ReviewApp
from catalogcap.store.captions import get_caption, save_model_captions
from catalogcap.store.database import read_session, write_session
from catalogcap.store.models import KINDS, Asset, AssetPath

SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? '
                    r"(-?[0-9.e+-]+|\+Inf|NaN)$")

PROBLEM = "application/problem+json"


def poll(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `predicate` until it is true or `timeout` seconds pass (then fail naming `what`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def default_text(n: int, kind: str) -> str:
    return f"A red shirt number {n}" if kind == "alt_text" else f"A red cotton shirt, number {n}, on white."



T0 = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)


TEXTS = {
    0: ("Image of a red linen shirt arafed", "A red linen shirt with white buttons, laid flat on a white background."),
    1: ("Blue ceramic mug with a wooden handle", "A blue ceramic mug with a wooden handle, seen from the side."),
    2: ("Green running shoe shoe", "A green running shoe with a white sole on a grey floor."),
    3: ("Yellow baseball cap", "A yellow cotton baseball cap with a curved brim."),
}


SECRET = "s3cret-for-tests"


def parse_metrics(text: str) -> dict[str, float]:
    assert text.endswith("\n")
    samples, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("gauge", "counter", "histogram") and name not in typed
            typed.add(name)
        elif line.startswith("# HELP "):
            continue
        else:
            assert SAMPLE.match(line), line
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["code"] == code and body["title"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body


def seed(engine, n: int, start: int = 0) -> list[str]:
    """n captioned assets with both kinds of pending captions; their fingerprints."""
    fingerprints = []
    with write_session(engine) as session:
        for i in range(start, start + n):
            asset = Asset(fingerprint=f"{i:064x}", size=10, state="captioned", format="JPEG")
            session.add(asset)
            session.flush()
            save_model_captions(session, asset.id, {"alt_text": f"red shirt {i}", "description": f"a red shirt {i}"},
                                model="tiny", adapter_id=None, generation={"alt_text": {}, "description": {}})
            fingerprints.append(asset.fingerprint)
    return fingerprints


def bearer(engine, scope: str, name: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(engine, name or scope, scope).secret}"}


class RecordingHooks:
    def __init__(self) -> None:
        self.created: list[int] = []
        self.reviewed: list[tuple[list[int], str]] = []

    def captions_created(self, ids: list[int]) -> None:
        self.created += ids

    def captions_reviewed(self, ids: list[int], decision: str) -> None:
        self.reviewed.append((list(ids), decision))

    def adapter_promoted(self, adapter) -> None:
        raise AssertionError("the API does not promote adapters")

    def adapter_rolled_back(self, adapter, active) -> None:
        raise AssertionError("the API does not roll adapters back")


def fill_pending(engine: Engine, n_assets: int) -> None:
    """2 * n_assets pending captions in three bulk INSERT ... SELECT statements."""
    ts = "2026-01-01 00:00:00.000000"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"""
            WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {n_assets})
            INSERT INTO assets (id, fingerprint, size, width, height, format, state, created_at, updated_at)
            SELECT i, printf('%064x', i), 1000, 800, 600, 'JPEG', 'captioned', '{ts}', '{ts}' FROM seq""")
        conn.exec_driver_sql(f"""
            INSERT INTO asset_paths (asset_id, path, size, mtime_ns, missing, first_seen, last_seen)
            SELECT id, printf('/catalog/bulk/%06d.jpg', id), 1000, 0, 0, '{ts}', '{ts}' FROM assets""")
        conn.exec_driver_sql(f"""
            INSERT INTO captions (asset_id, kind, model_text, text, state, model, generation, version,
                                  context, warnings, created_at, updated_at)
            SELECT a.id, k.kind, 'a product photo ' || a.id, 'a product photo ' || a.id, 'pending', 'blip', '{{}}',
                   1, '{{}}', '[]', '{ts}', '{ts}'
            FROM assets a CROSS JOIN (SELECT 'alt_text' AS kind UNION ALL SELECT 'description') k
            ORDER BY a.id, k.kind""")


def add_captions(engine: Engine, n: int, *, folder: str = "/catalog/images", start: int = 0,
                 text: Callable[[int, str], str] = default_text, model: str = "blip-base",
                 adapter: str | None = None, paths: Iterable[Path] | None = None,
                 at: datetime = T0) -> list[int]:
    """n images with both captions, written the way the captioner writes them; returns caption ids."""
    files = list(paths) if paths is not None else [Path(folder) / f"item-{start + i:04d}.jpg" for i in range(n)]
    ids: list[int] = []
    with write_session(engine) as session:
        for i, path in enumerate(files):
            number = start + i
            asset = Asset(fingerprint=f"{number:064x}", size=2048 + number, width=800, height=600, format="JPEG",
                          state="captioned", created_at=at, updated_at=at)
            session.add(asset)
            session.flush()
            session.add(AssetPath(asset_id=asset.id, path=str(path), size=asset.size, mtime_ns=0,
                                  first_seen=at, last_seen=at))
            texts = {kind: text(number, kind) for kind in KINDS}
            saved = save_model_captions(session, asset.id, texts, model=model, adapter_id=adapter,
                                        generation={kind: {"num_beams": 1} for kind in KINDS})
            for caption in saved:
                caption.created_at = caption.updated_at = at
                session.add(caption)
            ids.extend(c.id for c in saved)
    return ids


def prompt_input(app: ReviewApp) -> TextArea:
    return app.query_one("#prompt-input", TextArea)


async def settled(pilot) -> None:
    """Every decision is written and its result shown."""
    await pilot.app.saved()
    await until(pilot, lambda: not pilot.app._writes)
    await ready(pilot)


async def ready(pilot) -> None:
    """The queue is on screen and the detail of the caption under the cursor is shown."""
    app = pilot.app
    await until(pilot, lambda: app.current() is not None and app.detail is not None
                and app.detail.id == app.current().id)
    await pilot.pause()


async def until(pilot, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the app did not get there in time"
        await pilot.pause(0.01)


def make_app(engine, reviewer: str = "alice", **kw: Any) -> tuple[ReviewApp, list[tuple[str, str]]]:
    """The app, and the notifications it shows as (severity, message)."""
    app = ReviewApp(engine, reviewer=reviewer, **kw)
    shown: list[tuple[str, str]] = []
    notify = app.notify

    def record(message: str, **options: Any) -> None:
        shown.append((options.get("severity", "information"), message))
        notify(message, **options)

    app.notify = record  # type: ignore[method-assign]
    return app, shown


def caption(engine, caption_id: int):
    with read_session(engine) as session:
        return get_caption(session, caption_id)[0]


class Receiver:
    """A webhook endpoint: checks each signature itself, answers with the planned statuses (then 200)."""

    def __init__(self, port: int = 0) -> None:
        self.received: list[tuple[dict[str, str], dict]] = []
        self.plan: list[int] = []
        self.delay = 0.0
        self.hold: threading.Event | None = None  # when set to an Event, answers wait until it is set
        self.arrived = threading.Event()  # a request reached the handler
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                signed = hmac.compare_digest(expected, self.headers.get("X-Catalogcap-Signature", ""))
                receiver.arrived.set()
                if receiver.hold is not None:
                    receiver.hold.wait(60)
                time.sleep(receiver.delay)
                status = (receiver.plan.pop(0) if receiver.plan else 200) if signed else 401
                if status == 200:
                    receiver.received.append((dict(self.headers), json.loads(body)))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/catalogcap"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def keys(self) -> list[str]:
        return [body["idempotency_key"] for _headers, body in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
