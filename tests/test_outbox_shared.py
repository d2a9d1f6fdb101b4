"""The webhook outbox in the store: hosts sharing one PostgreSQL deliver each event once
between them; an old per-home outbox file is moved in."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from catalogcap_webhook import event_key, payload
from catalogcap_webhook.delivery import stop_couriers
from catalogcap_webhook.outbox import LEGACY_FILE, Outbox

from catalogcap.settings import load_settings
from catalogcap.store.database import create_store_engine
from tests.conftest import ROOT
from tests.test_webhook import SECRET, Receiver, configure, wait_for


@pytest.fixture(autouse=True)
def _couriers():
    yield
    stop_couriers()


@pytest.mark.postgresql
def test_concurrent_claims_on_postgresql_never_take_a_row_twice(store_url: str) -> None:
    """Eight claimers, each with its own connection pool (as on eight hosts), race for the heads."""
    urls = [f"https://shop{n}.example/h" for n in range(4)]
    seed = Outbox(create_store_engine(store_url))
    for n in range(25):
        seed.enqueue(f"key-{n}", "caption.accepted", b"{}", urls)
    taken: list[int] = []
    start = threading.Barrier(8)

    def claimer() -> None:
        outbox = Outbox(create_store_engine(store_url))
        start.wait()
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 2.0:
            rows = outbox.claim(60)
            taken.extend(row.id for row in rows)
            for row in rows:
                outbox.delivered(row.id, 200)
            if rows:
                idle_since = time.monotonic()
        outbox.engine.dispose()

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(taken) == len(set(taken)) == 100
    assert seed.summary()[urls[0]]["delivered"] == 25


@pytest.mark.postgresql
@pytest.mark.slow
def test_two_delivering_processes_send_each_event_once(home: Path) -> None:
    receivers = [Receiver() for _ in range(3)]
    for receiver in receivers:
        receiver.delay = 0.02
    urls = [receiver.url for receiver in receivers]
    configure(home, urls[0])
    config = home / "catalogcap.toml"
    config.write_text(config.read_text().replace(f'urls = ["{urls[0]}"]', f"urls = {json.dumps(urls)}"))
    env = {**os.environ, "CATALOGCAP_WEBHOOK_SECRET": SECRET, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-m", "catalogcap", "webhook", "deliver", "--follow"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    lines: list[list[str]] = [[], []]

    def read(n: int) -> None:
        for line in procs[n].stdout:
            lines[n].append(line)

    readers = [threading.Thread(target=read, args=(n,), daemon=True) for n in range(2)]
    for thread in readers:
        thread.start()
    count = 12
    try:
        def started() -> bool:
            for proc in procs:
                assert proc.poll() is None, proc.communicate()[1]
            return all(lines)
        wait_for(started, 120)  # both made their first pass over the empty outbox
        outbox = Outbox.for_settings(load_settings())
        for n in range(count):
            key = event_key("caption.accepted", n)
            outbox.enqueue(key, "caption.accepted", payload(key, "caption.accepted", None, {"n": n}), urls)
        wait_for(lambda: all(len(r.received) >= count for r in receivers), 120)
        wait_for(lambda: all(v["pending"] == 0 for v in outbox.summary().values()), 30)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
        for thread in readers:
            thread.join(10)
        for receiver in receivers:
            receiver.close()
    for receiver in receivers:
        assert [body["data"]["n"] for _h, body in receiver.received] == list(range(count))  # once each, in order
    delivered = [int(line.split(",")[0].split(":")[1]) for out in lines for line in out[1:]
                 if line.startswith("delivered:")]
    assert sum(delivered) == count * len(urls), lines


def test_an_old_outbox_file_is_moved_into_the_store(home: Path) -> None:
    legacy = home / LEGACY_FILE
    with sqlite3.connect(legacy) as conn:
        conn.executescript(
            "CREATE TABLE deliveries (id INTEGER PRIMARY KEY, event_key TEXT NOT NULL, url TEXT NOT NULL,"
            " event_type TEXT NOT NULL, body BLOB NOT NULL, state TEXT NOT NULL DEFAULT 'pending',"
            " attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL, lease_until REAL,"
            " last_status INTEGER, last_error TEXT, created_at REAL NOT NULL, delivered_at REAL,"
            " UNIQUE (event_key, url));"
            "INSERT INTO deliveries (event_key, url, event_type, body, state, next_attempt_at, created_at,"
            " delivered_at) VALUES ('k1', 'https://a.example/h', 'caption.accepted', X'7B7D', 'pending', 1, 1, NULL),"
            " ('k2', 'https://a.example/h', 'caption.accepted', X'7B7D', 'delivered', 1, 1, 2);")
    outbox = Outbox.for_settings(load_settings())
    assert not legacy.exists() and legacy.with_name(LEGACY_FILE + ".imported").exists()
    summary = outbox.summary()["https://a.example/h"]
    assert (summary["pending"], summary["delivered"], summary["dead"]) == (1, 1, 0)
    assert outbox.enqueue("k2", "caption.accepted", b"{}", ["https://a.example/h"]) == 0  # delivered before
    assert [row.event_key for row in outbox.claim(60)] == ["k1"]
