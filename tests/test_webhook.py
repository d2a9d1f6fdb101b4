"""catalogcap-webhook against a real HTTP server on 127.0.0.1: signed, retried, each event exactly once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from catalogcap_webhook.delivery import stop_couriers
from catalogcap_webhook.outbox import Outbox
from click.testing import CliRunner

from catalogcap.cli import add_plugin_commands, cli
from catalogcap.plugins import Hooks
from catalogcap.store.database import create_store_engine, write_session
from catalogcap.store.models import Adapter, utcnow
from tests.conftest import ROOT, make_image
from tests.factories import SECRET, Receiver
from tests.plugin_support import add_image


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def configure(home: Path, url: str, **extra: object) -> None:
    lines = ["[plugin_config.webhook]", f'urls = ["{url}"]', "backoff_seconds = 0.05", "backoff_max_seconds = 0.2",
             "timeout_seconds = 2"] + [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    (home / "catalogcap.toml").write_text("\n".join(lines) + "\n")


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.stdout if code == 0 else result.output


@pytest.fixture(autouse=True)
def _couriers(monkeypatch: pytest.MonkeyPatch):
    add_plugin_commands(cli)
    monkeypatch.setenv("CATALOGCAP_WEBHOOK_SECRET", SECRET)
    yield
    stop_couriers()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def test_an_accepted_caption_is_posted_signed_at_once(home: Path, engine, photos: Path, receiver: Receiver) -> None:
    configure(home, receiver.url)
    ids = add_image(engine, photos / "red-shirt.jpg")
    run("captions", "accept", str(ids["alt_text"]))
    run("captions", "edit", str(ids["description"]), "A red cotton shirt.")
    wait_for(lambda: len(receiver.received) == 2)
    (headers, accepted), (_, edited) = receiver.received
    assert accepted["type"] == "caption.accepted" and edited["type"] == "caption.edited"
    assert accepted["data"]["text"] == "model alt of red-shirt" and accepted["data"]["id"] == ids["alt_text"]
    assert edited["data"]["text"] == "A red cotton shirt." and edited["data"]["model_text"].startswith("model")
    assert headers["Idempotency-Key"] == accepted["id"] == accepted["idempotency_key"]
    assert headers["X-Catalogcap-Event"] == "caption.accepted" and headers["X-Catalogcap-Attempt"] == "1"
    run("captions", "reject", str(ids["alt_text"]))  # rejections are not sent by default
    # the hook ran before the command returned: nothing queued now means nothing will ever be sent
    summary = Outbox.for_settings(run_settings(home)).summary()[receiver.url]
    assert (summary["pending"], summary["delivered"]) == (0, 2)
    assert len(receiver.received) == 2


def test_a_receiver_that_was_down_catches_up_with_every_event_exactly_once(
        home: Path, engine, photos: Path) -> None:
    port = free_port()
    configure(home, f"http://127.0.0.1:{port}/hooks/catalogcap")
    captions = [add_image(engine, path) for path in sorted(p for p in photos.rglob("*") if p.is_file())]
    for ids in captions:
        run("captions", "accept", str(ids["alt_text"]))
    with write_session(engine) as session:
        session.add(Adapter(id="night-1", base_model="tiny", path="/adapters/night-1", state="active",
                            metrics={"CIDEr": 0.42}, promoted_at=utcnow()))
    hooks = Hooks(engine, settings=run_settings(home))
    with write_session(engine) as session:
        adapter = session.get(Adapter, "night-1")
    hooks.adapter_promoted(adapter)
    hooks.captions_reviewed([captions[0]["alt_text"]], "accept")  # the same event again: not queued twice
    outbox = Outbox.for_settings(run_settings(home))
    wait_for(lambda: outbox.summary()[f"http://127.0.0.1:{port}/hooks/catalogcap"]["last_error"] is not None)
    status = json.loads(run("webhook", "status", "--json"))["deliveries"]
    assert status[f"http://127.0.0.1:{port}/hooks/catalogcap"]["pending"] == 5
    assert "ConnectError" in status[f"http://127.0.0.1:{port}/hooks/catalogcap"]["last_error"]
    wait_for(lambda: _most_attempts(outbox) >= 2)  # the courier tried again while it is down
    receiver = Receiver(port)
    try:
        wait_for(lambda: len(receiver.received) == 5)  # the courier retries by itself
        assert json.loads(run("webhook", "deliver", "--json")) == {"delivered": 0, "failed": 0, "dead": 0}
        keys = receiver.keys()
        assert len(set(keys)) == 5
        types = [body["type"] for _h, body in receiver.received]
        assert types == ["caption.accepted"] * 4 + ["adapter.promoted"]  # in the order they happened
        assert receiver.received[-1][1]["data"]["metrics"] == {"CIDEr": 0.42}
        assert max(int(h["X-Catalogcap-Attempt"]) for h, _b in receiver.received) > 1
    finally:
        receiver.close()


def _most_attempts(outbox) -> int:
    from catalogcap.store.models import OutboxRow

    with outbox.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.max(OutboxRow.attempts))).scalar() or 0


def run_settings(home: Path):
    from catalogcap.settings import load_settings

    return load_settings({"home": str(home)})


def test_the_outbox_drained_by_command_sends_each_event_once(home: Path, engine, photos: Path) -> None:
    port = free_port()
    configure(home, f"http://127.0.0.1:{port}/hooks", deliver_in_background=False)
    ids = add_image(engine, photos / "blue-mug.png")
    run("captions", "accept", str(ids["alt_text"]), str(ids["description"]))
    assert json.loads(run("webhook", "deliver", "--json")) == {"delivered": 0, "failed": 1, "dead": 0}
    receiver = Receiver(port)
    try:
        assert json.loads(run("webhook", "deliver", "--json"))["delivered"] == 2
        assert json.loads(run("webhook", "deliver", "--json"))["delivered"] == 0
        assert "queued 0 new deliveries for 2 captions" in run("webhook", "enqueue")
        run("webhook", "deliver")
        assert len(receiver.keys()) == len(set(receiver.keys())) == 2
    finally:
        receiver.close()


def test_failures_are_retried_with_backoff_until_accepted(home: Path, engine, photos: Path,
                                                          receiver: Receiver) -> None:
    receiver.plan = [503, 500]
    configure(home, receiver.url)
    ids = add_image(engine, photos / "red-shirt.jpg")
    run("captions", "accept", str(ids["alt_text"]))
    wait_for(lambda: len(receiver.received) == 1)
    headers, _body = receiver.received[0]
    assert headers["X-Catalogcap-Attempt"] == "3"


def test_a_permanent_rejection_goes_dead_without_blocking_the_next_event(
        home: Path, engine, photos: Path, receiver: Receiver) -> None:
    receiver.plan = [422]
    configure(home, receiver.url, deliver_in_background=False)
    first, second = add_image(engine, photos / "red-shirt.jpg"), add_image(engine, photos / "blue-mug.png")
    run("captions", "accept", str(first["alt_text"]), str(second["alt_text"]))
    assert json.loads(run("webhook", "deliver", "--json")) == {"delivered": 1, "failed": 0, "dead": 1}
    assert [body["data"]["id"] for _h, body in receiver.received] == [second["alt_text"]]
    assert "re-armed 1" in run("webhook", "retry")
    run("webhook", "deliver")
    assert [body["data"]["id"] for _h, body in receiver.received] == [second["alt_text"], first["alt_text"]]


def test_nothing_is_sent_unsigned(home: Path, engine, photos: Path, receiver: Receiver,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CATALOGCAP_WEBHOOK_SECRET")
    configure(home, receiver.url, deliver_in_background=False)
    ids = add_image(engine, photos / "red-shirt.jpg")
    run("captions", "accept", str(ids["alt_text"]))
    run("webhook", "deliver")
    assert receiver.received == []
    assert "CATALOGCAP_WEBHOOK_SECRET is not set" in run("webhook", "status")
    monkeypatch.setenv("CATALOGCAP_WEBHOOK_SECRET", SECRET)
    run("webhook", "deliver")
    assert len(receiver.received) == 1


def test_the_config_refuses_secrets_and_plain_http_to_other_hosts(home: Path) -> None:
    configure(home, "https://shop.example.com/hooks", secret="hunter2")
    out = run("webhook", "status", code=1)
    assert "plugin_config.webhook" in out and "never read from the config file" in out
    assert "hunter2" not in out and "'secret': '***'" in out  # the refusal does not repeat the secret
    configure(home, "http://shop.example.com/hooks")
    assert "plain http to another machine" in run("webhook", "status", code=1)
    configure(home, "http://shop.example.com/hooks", allow_http=True)
    run("webhook", "status")
    configure(home, "https://user:pw4hook@shop.example.com/hooks")
    out = run("webhook", "status", code=1)
    assert "carries credentials" in out and "pw4hook" not in out


def test_hooks_return_at_once_while_the_endpoint_is_slow(home: Path, engine, photos: Path,
                                                         receiver: Receiver) -> None:
    """The endpoint holds every request until the test lets it go: the hook call must return
    while a delivery is still waiting on it (no timing involved)."""
    receiver.hold = threading.Event()
    configure(home, receiver.url)
    ids = add_image(engine, photos / "red-shirt.jpg")
    from tests.plugin_support import review

    review(engine, ids["alt_text"])
    hooks = Hooks(engine, settings=run_settings(home))
    try:
        hooks.captions_reviewed([ids["alt_text"]], "accept")  # returns although the endpoint never answers
        wait_for(receiver.arrived.is_set)  # the courier is now inside a delivery the endpoint holds
        assert receiver.received == []
    finally:
        receiver.hold.set()
    wait_for(lambda: len(receiver.received) == 1)


def test_two_drainers_never_hold_the_same_row(store_url: str) -> None:
    outbox = Outbox(create_store_engine(store_url))
    for n in range(3):
        outbox.enqueue(f"key-{n}", "caption.accepted", b"{}", ["https://a.example/h", "https://b.example/h"])
    assert outbox.enqueue("key-0", "caption.accepted", b"{}", ["https://a.example/h"]) == 0
    first = outbox.claim(60)
    assert sorted((d.url, d.event_key) for d in first) == [("https://a.example/h", "key-0"),
                                                           ("https://b.example/h", "key-0")]
    assert Outbox(create_store_engine(store_url)).claim(60) == []  # another process: each URL's head is leased
    outbox.delivered(first[0].id, 200)
    assert [(d.url, d.event_key) for d in outbox.claim(60)] == [(first[0].url, "key-1")]


def test_a_short_command_delivers_before_it_exits(home: Path, engine, photos: Path, receiver: Receiver) -> None:
    configure(home, receiver.url)
    ids = add_image(engine, make_image(photos / "teal-vase.jpg", "teal"))
    env = {**os.environ, "CATALOGCAP_HOME": str(home), "CATALOGCAP_WEBHOOK_SECRET": SECRET}
    result = subprocess.run([sys.executable, "-m", "catalogcap", "captions", "accept", str(ids["alt_text"])],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [body["data"]["id"] for _h, body in receiver.received] == [ids["alt_text"]]
