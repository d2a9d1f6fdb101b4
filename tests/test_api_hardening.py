"""The API under misuse: text over the limit, reviewer names, a locked store, hostile HTTP methods."""

from __future__ import annotations

import random
import sqlite3
import string
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from catalogcap.api.app import create_app
from catalogcap.store import database
from catalogcap.store.database import create_store_engine, read_session
from catalogcap.store.models import Caption
from tests.factories import RecordingHooks, assert_problem, bearer, parse_metrics, seed


@pytest.fixture
def client(settings, engine) -> TestClient:
    with TestClient(create_app(settings, engine, run_worker=False, hooks=RecordingHooks()),
                    raise_server_exceptions=False) as client:
        yield client


def test_alt_text_over_the_limit_is_refused_with_the_limit(client, engine, settings) -> None:
    headers = {**bearer(engine, "review", "shop"), "If-Match": "*"}
    seed(engine, 1)
    for text in ("x" * (settings.alt_text_limit + 1), "word " * 1000):
        body = assert_problem(client.post("/v1/captions/1/review", headers=headers,
                                          json={"decision": "edit", "text": text}), 422, "text_too_long")
        assert body["limit"] == settings.alt_text_limit and f"limit of {settings.alt_text_limit}" in body["detail"]
    with read_session(engine) as session:
        assert session.get(Caption, 1).state == "pending"
    described = client.post("/v1/captions/2/review", headers=headers, json={"decision": "edit", "text": "y " * 600})
    assert_problem(described, 422, "text_too_long")
    fits = client.post("/v1/captions/1/review", headers=headers,
                       json={"decision": "edit", "text": "x" * settings.alt_text_limit})
    assert fits.status_code == 200, fits.text


def test_the_token_name_is_recorded_as_the_reviewer_beside_the_clients_name(client, engine) -> None:
    headers = {**bearer(engine, "review", "shop-backend"), "If-Match": "*"}
    seed(engine, 1)
    plain = client.post("/v1/captions/1/review", headers=headers, json={"decision": "accept"})
    assert plain.json()["reviewer"] == "api:shop-backend"
    named = client.post("/v1/captions/2/review", headers=headers, json={"decision": "accept", "reviewer": "maria"})
    assert named.json()["reviewer"] == "maria (api:shop-backend)"
    long = client.post("/v1/captions/1/review", headers=headers, json={"decision": "reject", "reviewer": "m" * 128})
    assert long.json()["reviewer"].endswith(" (api:shop-backend)") and len(long.json()["reviewer"]) == 128


def test_a_locked_store_is_503_with_retry_after(settings, home: Path, monkeypatch) -> None:
    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 200)
    engine = create_store_engine(settings.db_url)
    seed(engine, 1)
    with TestClient(create_app(settings, engine, run_worker=False, hooks=RecordingHooks()),
                    raise_server_exceptions=False) as client:
        used = {**bearer(engine, "review", "shop"), "If-Match": "*"}
        assert client.get("/v1/captions/1", headers=used).status_code == 200  # its last use is now recorded
        fresh = {**bearer(engine, "review", "new"), "If-Match": "*"}  # its first use writes last_used_at
        holder = sqlite3.connect(home / "catalogcap.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock past the busy timeout
        try:
            answers = [client.post("/v1/captions/1/review", headers=headers, json={"decision": "accept"})
                       for headers in (used, fresh)]
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        for answer in answers:
            body = assert_problem(answer, 503, "store_busy")
            assert answer.headers["retry-after"] == "5" and "busy" in body["detail"]
        headers = used
        assert client.post("/v1/captions/1/review", headers=headers, json={"decision": "accept"}).status_code == 200
    engine.dispose()


def test_hostile_methods_do_not_add_metric_series(client, engine) -> None:
    headers = bearer(engine, "read")
    client.get("/healthz")
    before = parse_metrics(client.get("/metrics", headers=headers).text)
    rng = random.Random(7)
    for _ in range(300):
        method = "".join(rng.choices(string.ascii_uppercase, k=4000))
        assert client.request(method, "/healthz").status_code == 405
    after = parse_metrics(client.get("/metrics", headers=headers).text)
    new_series = set(after) - set(before)
    assert all(len(name) < 200 for name in after)
    requests = {name for name in new_series if name.startswith("catalogcap_api_requests_total{")
                and "/metrics" not in name}
    assert requests == {'catalogcap_api_requests_total{method="other",route="/healthz",status="405"}'}
    assert after['catalogcap_api_requests_total{method="other",route="/healthz",status="405"}'] == 300
