"""Webhook delivery against a receiver that trickles its answer, and `enqueue` vs `deliver`, in real
processes: each POST ends within timeout_seconds, and a slow URL never holds up another."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_image
from tests.factories import SECRET, Receiver
from tests.plugin_support import add_reviewed

ROOT = Path(__file__).resolve().parents[1]


class Trickler:
    """An HTTP endpoint on 127.0.0.1 that reads the request, then answers one byte a second."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/slow"
        self.stop = threading.Event()
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        with conn:
            conn.recv(65536)
            for byte in answer:
                if self.stop.wait(1.0):  # the adversary's pace: a byte a second, never the whole answer in time
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def trickler() -> Iterator[Trickler]:
    server = Trickler()
    yield server
    server.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def catalogcap(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CATALOGCAP_HOME": str(home), "CATALOGCAP_WEBHOOK_SECRET": SECRET,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "catalogcap", *args], env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def configure(home: Path, *urls: str) -> None:
    (home / "catalogcap.toml").write_text(
        "[plugin_config.webhook]\n" + f"urls = {json.dumps(list(urls))}\n"
        "timeout_seconds = 2\nbackoff_seconds = 60\nflush_seconds = 1\n")


def test_a_trickling_receiver_is_cut_off_and_the_other_url_gets_everything(
        home: Path, engine, tmp_path: Path, trickler: Trickler, receiver: Receiver) -> None:
    configure(home, trickler.url, receiver.url)
    for i, color in enumerate(("red", "green", "blue")):
        add_reviewed(engine, make_image(tmp_path / f"item-{i}.jpg", color), f"{color} shirt")
    queued = catalogcap(home, "webhook", "enqueue")
    assert queued.returncode == 0, queued.stderr
    assert "queued 6 new deliveries for 3 captions" in queued.stdout
    started = time.monotonic()
    done = catalogcap(home, "webhook", "deliver", "--json")
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"delivered": 3, "failed": 1, "dead": 0}
    assert took < 20, took  # the trickle would take 40 s; the POST is cut off after timeout_seconds (2 s)
    assert sorted(body["data"]["text"] for _h, body in receiver.received) == ["blue shirt", "green shirt",
                                                                              "red shirt"]
    status = json.loads(catalogcap(home, "webhook", "status", "--json").stdout)["deliveries"]
    assert status[trickler.url]["pending"] == 3 and status[trickler.url]["delivered"] == 0
    assert "no complete answer within timeout_seconds (2 s)" in status[trickler.url]["last_error"]
    assert status[receiver.url]["delivered"] == 3


def test_enqueue_only_queues_and_deliver_sends(home: Path, engine, tmp_path: Path, receiver: Receiver) -> None:
    configure(home, receiver.url)
    add_reviewed(engine, make_image(tmp_path / "mug.jpg", "blue"), "Blue mug")
    queued = catalogcap(home, "webhook", "enqueue")
    assert queued.returncode == 0, queued.stderr
    assert "queued 1 new deliveries for 1 captions; `catalogcap webhook deliver` sends them" in queued.stdout
    assert receiver.received == []  # nothing went out when enqueue exited
    done = catalogcap(home, "webhook", "deliver", "--json")
    assert json.loads(done.stdout) == {"delivered": 1, "failed": 0, "dead": 0}
    assert [body["data"]["text"] for _h, body in receiver.received] == ["Blue mug"]
    again = catalogcap(home, "webhook", "enqueue")
    assert "queued 0 new deliveries" in again.stdout  # delivered before: not queued again
