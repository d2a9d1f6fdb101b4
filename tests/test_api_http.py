"""The HTTP API in process (FastAPI's TestClient, a real temp SQLite store, no model):
tokens and scopes, problem details, uploads and registered paths, paging, reviews, long-poll, metrics."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlmodel import select

from catalogcap.api.app import create_app
from catalogcap.api.tokens import revoke_token
from catalogcap.store.captions import save_model_captions
from catalogcap.store.database import read_session, write_session
from catalogcap.store.models import Asset, AssetPath, Caption, Job, utcnow
from tests.factories import PROBLEM, RecordingHooks, assert_problem, bearer, parse_metrics, seed

EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(200)


def image_bytes(color: str = "red", size: tuple[int, int] = (64, 48), fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    folder = tmp_path / "catalog"
    folder.mkdir()
    return folder


@pytest.fixture
def hooks() -> RecordingHooks:
    return RecordingHooks()


@pytest.fixture
def make_client(settings, engine, catalog, hooks) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**api: object) -> TestClient:
        settings.api.roots = [catalog]
        settings.api.max_wait_seconds = 5.0
        for key, value in api.items():
            setattr(settings.api, key, value)
        client = TestClient(create_app(settings, engine, run_worker=False, hooks=hooks),
                            raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


def upload(client: TestClient, headers: dict[str, str], data: bytes, name: str = "photo.jpg"):
    return client.post("/v1/images", headers=headers, files={"file": (name, data, "image/jpeg")})


# ---------------------------------------------------------------------------------------- tokens


def test_everything_but_healthz_needs_a_live_token(client, engine) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    for path in ("/v1/status", "/v1/captions", "/v1/adapters", "/metrics", f"/v1/images/{'0' * 64}",
                 "/v1/captions/1", "/no/such/route"):
        body = assert_problem(client.get(path), 401, "token_missing")
        assert "tokens create" in body["detail"]
    assert client.get("/v1/status").headers["www-authenticate"].startswith("Bearer")
    assert_problem(client.get("/v1/status", headers={"Authorization": "Basic dXNlcjpwYXNz"}), 401, "token_missing")
    assert_problem(client.get("/v1/status", headers={"Authorization": "Bearer ccap_0_x"}), 401, "token_invalid")
    headers = bearer(engine, "read")
    assert client.get("/v1/status", headers=headers).status_code == 200
    revoke_token(engine, "read")
    assert_problem(client.get("/v1/status", headers=headers), 401, "token_invalid")


def test_scopes_are_enforced(client, engine, catalog) -> None:
    read, review, admin = (bearer(engine, s) for s in ("read", "review", "admin"))
    for headers in (read, review, admin):
        assert client.get("/v1/captions", headers=headers).status_code == 200
    denied = client.post("/v1/images", headers=read, files={"file": ("a.jpg", image_bytes(), "image/jpeg")})
    body = assert_problem(denied, 403, "insufficient_scope")
    assert "'read'" in body["detail"] and 'scope="review"' in denied.headers["www-authenticate"]
    assert upload(client, review, image_bytes()).status_code == 202
    (catalog / "a.png").write_bytes(image_bytes("blue", fmt="PNG"))
    assert_problem(client.post("/v1/images", headers=review, data={"path": str(catalog / "a.png")}), 403,
                   "insufficient_scope")
    assert client.post("/v1/images", headers=admin, data={"path": str(catalog / "a.png")}).status_code == 202
    seed(engine, 1)
    assert_problem(client.post("/v1/captions/1/review", headers={**read, "If-Match": "1"},
                               json={"decision": "accept"}), 403, "insufficient_scope")


def test_an_unexpected_error_is_a_problem_without_a_trace(client, engine, monkeypatch) -> None:
    import catalogcap.api.routes.system as system

    def broken(_engine):
        raise RuntimeError("secret detail /etc/shadow")

    monkeypatch.setattr(system, "store_status", broken)
    response = client.get("/v1/status", headers=bearer(engine, "read"))
    body = assert_problem(response, 500, "internal_error")
    assert "secret" not in response.text and body["instance"].startswith("urn:uuid:")


# ---------------------------------------------------------------------------------------- uploads


def test_same_bytes_twice_is_the_same_image(client, engine, settings) -> None:
    headers = bearer(engine, "review")
    data = image_bytes("green")
    first = upload(client, headers, data, name="../../etc/evil.jpg")
    assert first.status_code == 202
    image = first.json()
    assert image["state"] == "queued" and image["job"]["state"] == "pending" and image["format"] == "JPEG"
    assert first.headers["location"] == f"/v1/images/{image['fingerprint']}"
    second = upload(client, headers, data, name="other-name.png")
    assert second.status_code == 200 and second.json()["fingerprint"] == image["fingerprint"]
    with read_session(engine) as session:
        assert len(session.exec(select(Job)).all()) == 1
        (path,) = session.exec(select(AssetPath)).all()
    fp = image["fingerprint"]
    assert Path(path.path) == settings.home / "uploads" / fp[:2] / f"{fp}.jpg"
    assert not (settings.home.parent / "etc").exists()
    assert list((settings.home / "uploads" / ".incoming").iterdir()) == []
    got = client.get(f"/v1/images/{fp}", headers=headers)
    assert got.status_code == 200 and got.json()["job"]["id"] == image["job"]["id"]


def test_an_exe_named_jpg_is_refused_and_not_kept(client, engine, settings) -> None:
    response = upload(client, bearer(engine, "review"), EXE, name="setup.jpg")
    assert_problem(response, 415, "not_an_image")
    pdf = upload(client, bearer(engine, "review"), b"%PDF-1.7\n" + bytes(100), name="catalog.jpg")
    assert_problem(pdf, 415, "unsupported_format")
    assert_problem(upload(client, bearer(engine, "review"), b""), 422, "empty")
    with read_session(engine) as session:
        assert session.exec(select(Asset)).all() == []
    assert [p for p in (settings.home / "uploads").rglob("*") if p.is_file()] == []


def test_upload_budgets_bytes_and_pixels(make_client, engine) -> None:
    client = make_client(max_upload_mb=0.05, max_upload_pixels=1_000_000)
    headers = bearer(engine, "review")
    noise = Image.frombytes("RGB", (300, 300), os.urandom(300 * 300 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, "PNG")
    assert len(buffer.getvalue()) > 0.05 * 2**20 + 64 * 1024
    assert_problem(upload(client, headers, buffer.getvalue()), 413, "content_too_large")
    bomb = image_bytes("white", size=(2000, 1000), fmt="PNG")
    assert len(bomb) < 0.05 * 2**20
    body = assert_problem(upload(client, headers, bomb), 413, "too_many_pixels")
    assert "2000x1000" in body["detail"]
    just_over = buffer.getvalue()[: int(0.05 * 2**20) + 10]  # within the multipart slack, over the file budget
    assert_problem(upload(client, headers, just_over), 413, "too_large")

    boundary = "catalogcap-test"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n").encode()

    def chunked():  # no Content-Length: the limit must hold while the body streams in
        yield head
        for _ in range(40):
            yield bytes(8192)
        yield f"\r\n--{boundary}--\r\n".encode()

    multipart = {**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    streamed = client.post("/v1/images", headers=multipart,
                           content=chunked())
    assert_problem(streamed, 413, "content_too_large")


def test_anonymous_uploads_are_refused_before_the_body_is_read(client) -> None:
    response = client.post("/v1/images", files={"file": ("a.jpg", bytes(5 * 2**20), "image/jpeg")})
    assert_problem(response, 401, "token_missing")


def test_file_or_path_exactly_one(client, engine) -> None:
    headers = bearer(engine, "admin")
    assert_problem(client.post("/v1/images", headers=headers, data={}), 422, "file_or_path")
    both = client.post("/v1/images", headers=headers, data={"path": "/x.jpg"},
                       files={"file": ("a.jpg", image_bytes(), "image/jpeg")})
    assert both.status_code in (400, 422) and both.headers["content-type"] == PROBLEM


# ---------------------------------------------------------------------------------------- paths


def test_registered_paths_stay_inside_the_roots(client, engine, catalog, tmp_path) -> None:
    headers = bearer(engine, "admin")
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(image_bytes("black"))
    good = catalog / "shoes" / "red.jpg"
    good.parent.mkdir()
    good.write_bytes(image_bytes("red"))
    (catalog / "escape.jpg").symlink_to(outside / "secret.jpg")
    (catalog / "alias.jpg").symlink_to(good)
    (catalog / "setup.jpg").write_bytes(EXE)
    (catalog / "notes.txt").write_text("hello")

    def register(path: str):
        return client.post("/v1/images", headers=headers, data={"path": path})

    first = register(str(good))
    assert first.status_code == 202
    assert register(str(good)).status_code == 200
    alias = register(str(catalog / "alias.jpg"))
    assert alias.status_code == 200 and alias.json()["fingerprint"] == first.json()["fingerprint"]
    assert_problem(register(f"{catalog}/shoes/../../private/secret.jpg"), 403, "path_outside_roots")
    assert_problem(register(f"{catalog}/../private/secret.jpg"), 403, "path_outside_roots")
    assert_problem(register(str(outside / "secret.jpg")), 403, "path_outside_roots")
    assert_problem(register("/etc/passwd"), 403, "path_outside_roots")
    assert_problem(register("/no/such/file.jpg"), 403, "path_outside_roots")  # no existence oracle
    assert_problem(register(str(catalog / "escape.jpg")), 403, "path_outside_roots")
    assert_problem(register("shoes/red.jpg"), 422, "path_not_absolute")
    assert_problem(register(str(catalog / "missing.jpg")), 404, "path_not_found")
    assert_problem(register(str(catalog / "shoes")), 422, "path_not_a_file")
    assert_problem(register(str(catalog / "notes.txt")), 422, "path_not_included")
    assert_problem(register(str(catalog / "setup.jpg")), 415, "not_an_image")
    with read_session(engine) as session:
        paths = {row.path for row in session.exec(select(AssetPath)).all()}
    assert paths == {str(good.resolve())}


def test_path_registration_is_off_without_roots(make_client, engine, catalog) -> None:
    client = make_client(roots=[])
    (catalog / "a.jpg").write_bytes(image_bytes())
    response = client.post("/v1/images", headers=bearer(engine, "admin"), data={"path": str(catalog / "a.jpg")})
    assert_problem(response, 403, "paths_disabled")


# ---------------------------------------------------------------------------------------- captions


def _walk(client, headers, **params) -> tuple[list[dict], str, int]:
    items, pages, cursor = [], 0, None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/captions", headers=headers, params=query).json()
        items += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return items, cursor, pages


def test_cursor_paging_and_incremental_sync(client, engine) -> None:
    headers = bearer(engine, "review", "sync")
    seed(engine, 7)
    items, cursor, pages = _walk(client, headers, limit=5)
    assert pages == 3 and len(items) == 14 and len({c["id"] for c in items}) == 14
    assert [(c["updated_at"], c["id"]) for c in items] == sorted((c["updated_at"], c["id"]) for c in items)
    assert {c["kind"] for c in items} == {"alt_text", "description"} and items[0]["fingerprint"] == f"{0:064x}"
    nothing = client.get("/v1/captions", headers=headers, params={"cursor": cursor}).json()
    assert nothing["items"] == [] and nothing["next_cursor"] == cursor and not nothing["has_more"]
    reviewed = client.post(f"/v1/captions/{items[3]['id']}/review", headers={**headers, "If-Match": '"1"'},
                           json={"decision": "edit", "text": "red cotton shirt"})
    assert reviewed.status_code == 200
    changed, cursor, _ = _walk(client, headers, cursor=cursor)
    assert [(c["id"], c["state"], c["text"]) for c in changed] == [(items[3]["id"], "edited", "red cotton shirt")]
    edited, _, _ = _walk(client, headers, state="edited")
    assert [c["id"] for c in edited] == [items[3]["id"]]
    alt, _, _ = _walk(client, headers, kind="alt_text", limit=3)
    assert len(alt) == 7 and {c["kind"] for c in alt} == {"alt_text"}
    later = client.get("/v1/captions", headers=headers, params={"since": "2999-01-01T00:00:00Z"}).json()
    assert later["items"] == [] and later["next_cursor"]
    recent, _, _ = _walk(client, headers, since=reviewed.json()["updated_at"])
    assert [c["id"] for c in recent] == [items[3]["id"]]
    assert_problem(client.get("/v1/captions", headers=headers, params={"cursor": "bm90LWEtY3Vyc29y"}), 422,
                   "invalid_cursor")
    assert_problem(client.get("/v1/captions", headers=headers, params={"since": "0.5"}), 422, "invalid_request")
    assert_problem(client.get("/v1/captions", headers=headers, params={"state": "gone"}), 422, "invalid_request")


def test_review_with_if_match(client, engine, hooks) -> None:
    headers = bearer(engine, "review", "editor")
    seed(engine, 1)
    got = client.get("/v1/captions/1", headers=headers)
    assert got.headers["etag"] == '"1"' and got.json()["state"] == "pending"
    url = "/v1/captions/1/review"
    assert_problem(client.post(url, headers=headers, json={"decision": "accept"}), 428, "if_match_missing")
    accepted = client.post(url, headers={**headers, "If-Match": '"1"'}, json={"decision": "accept"})
    assert accepted.status_code == 200 and accepted.headers["etag"] == '"2"'
    assert accepted.json()["state"] == "accepted" and accepted.json()["reviewer"] == "api:editor"
    late = client.post(url, headers={**headers, "If-Match": '"1"'}, json={"decision": "reject"})
    body = assert_problem(late, 409, "conflict")
    assert body["current_version"] == 2 and body["current_state"] == "accepted" and late.headers["etag"] == '"2"'
    edited = client.post(url, headers={**headers, "If-Match": "W/\"2\""},
                         json={"decision": "edit", "text": "  red linen shirt ", "reviewer": "maria"})
    assert edited.json()["text"] == "red linen shirt" and edited.json()["model_text"] == "red shirt 0"
    assert edited.json()["state"] == "edited" and edited.json()["reviewer"] == "maria (api:editor)"
    assert_problem(client.post(url, headers={**headers, "If-Match": "3"}, json={"decision": "edit"}), 422,
                   "invalid_request")
    assert_problem(client.post(url, headers={**headers, "If-Match": "3"}, json={"decision": "edit", "text": "  "}),
                   422, "invalid_request")
    assert_problem(client.post(url, headers={**headers, "If-Match": "three"}, json={"decision": "accept"}), 422,
                   "invalid_request")
    rejected = client.post(url, headers={**headers, "If-Match": "*"}, json={"decision": "reject", "reason": "blurry"})
    assert rejected.json()["state"] == "rejected" and rejected.json()["reject_reason"] == "blurry"
    assert_problem(client.post("/v1/captions/99/review", headers={**headers, "If-Match": "1"},
                               json={"decision": "accept"}), 404, "not_found")
    assert hooks.reviewed == [([1], "accept"), ([1], "edit"), ([1], "reject")]
    too_big = client.post(url, headers={**headers, "If-Match": "*"},
                          json={"decision": "edit", "text": "x" * 100_000})
    assert_problem(too_big, 413, "content_too_large")


def test_long_poll_returns_when_captions_arrive(client, engine) -> None:
    headers = bearer(engine, "review")
    fp = upload(client, headers, image_bytes("navy")).json()["fingerprint"]

    def caption_later() -> None:
        time.sleep(0.6)
        with write_session(engine) as session:
            asset = session.exec(select(Asset).where(Asset.fingerprint == fp)).one()
            save_model_captions(session, asset.id, {"alt_text": "navy", "description": "a navy square"},
                                model="tiny", adapter_id=None, generation={"alt_text": {}, "description": {}})
            asset.state = "captioned"
            session.add(asset)

    quick = client.get(f"/v1/images/{fp}/captions", headers=headers)
    assert quick.json()["captions"] == [] and quick.json()["image"]["state"] == "queued"
    writer = threading.Thread(target=caption_later)
    started = time.monotonic()
    writer.start()
    waited = client.get(f"/v1/images/{fp}/captions", headers=headers, params={"wait": 30})
    elapsed = time.monotonic() - started
    writer.join()
    assert 0.5 < elapsed < 4.0
    assert {c["kind"] for c in waited.json()["captions"]} == {"alt_text", "description"}
    assert client.get(f"/v1/images/{fp}", headers=headers, params={"wait": 30}).json()["state"] == "captioned"
    assert_problem(client.get(f"/v1/images/{'f' * 64}", headers=headers, params={"wait": 5}), 404,
                   "image_not_found")
    assert_problem(client.get("/v1/images/not-a-fingerprint", headers=headers), 422, "invalid_request")


def test_long_poll_is_capped_by_the_setting(make_client, engine) -> None:
    client = make_client(max_wait_seconds=0.3)
    headers = bearer(engine, "review")
    fp = upload(client, headers, image_bytes("olive")).json()["fingerprint"]
    started = time.monotonic()
    response = client.get(f"/v1/images/{fp}", headers=headers, params={"wait": 600})
    assert response.json()["state"] == "queued" and time.monotonic() - started < 2.0


# ---------------------------------------------------------------------------------------- system


def test_metrics_text_format(client, engine) -> None:
    headers = bearer(engine, "read")
    seed(engine, 2)
    now = utcnow()
    with write_session(engine) as session:
        for asset_id, seconds in ((1, 0.3), (2, 42.0)):
            from datetime import timedelta

            session.add(Job(asset_id=asset_id, state="done", created_at=now - timedelta(seconds=seconds),
                            finished_at=now, updated_at=now))
    client.get("/v1/captions/1", headers=headers)
    client.get("/v1/captions/2", headers=headers)
    response = client.get("/metrics", headers=headers)
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse_metrics(response.text)
    assert samples['catalogcap_captions{state="pending"}'] == 4
    assert samples['catalogcap_queue_jobs{state="done"}'] == 2
    assert samples['catalogcap_assets{state="captioned"}'] == 2
    assert samples['catalogcap_caption_latency_seconds_bucket{le="0.5"}'] == 1
    assert samples['catalogcap_caption_latency_seconds_bucket{le="60.0"}'] == 2
    assert samples['catalogcap_caption_latency_seconds_bucket{le="+Inf"}'] == 2
    assert samples["catalogcap_caption_latency_seconds_count"] == 2
    assert samples["catalogcap_caption_latency_seconds_sum"] == pytest.approx(42.3, abs=0.01)
    assert samples['catalogcap_api_requests_total{method="GET",route="/v1/captions/{caption_id}",status="200"}'] == 2
    assert "catalogcap_training_runs" in response.text and "catalogcap_captions_per_minute" in samples
    again = parse_metrics(client.get("/metrics", headers=headers).text)
    assert again["catalogcap_caption_latency_seconds_count"] == 2  # finished jobs are counted once


def test_status_adapters_and_openapi(client, engine) -> None:
    headers = bearer(engine, "read")
    seed(engine, 1)
    status = client.get("/v1/status", headers=headers).json()
    assert status["assets"] == 1 and status["captions"]["pending"] == 2 and status["worker"]["running"] is False
    assert client.get("/v1/adapters", headers=headers).json() == []
    doc = client.get("/openapi.json").json()
    page = client.get("/docs")
    assert page.status_code == 200 and "cdn" not in page.text.lower()  # works with no internet
    for asset in ("/docs-static/swagger-ui-bundle.js", "/docs-static/swagger-ui.css"):
        assert asset in page.text
        served = client.get(asset)  # public, like /docs itself
        assert served.status_code == 200 and len(served.content) > 100_000, asset
    assert b"isOAS31" in client.get("/docs-static/swagger-ui-bundle.js").content  # renders our OpenAPI 3.1
    assert client.get("/docs-static/../v1/captions").status_code in (401, 404)
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            assert bool(operation.get("security")) == (path != "/healthz"), (method, path)
            for status_code, response in operation["responses"].items():
                if status_code[0] in "45":
                    assert response["content"] == {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_private_docs_need_a_token(make_client, engine) -> None:
    client = make_client(public_docs=False)
    assert_problem(client.get("/openapi.json"), 401, "token_missing")
    assert client.get("/docs").status_code in (401, 404)
    assert client.get("/openapi.json", headers=bearer(engine, "read")).json()["info"]["title"] == "catalogcap"
    assert client.get("/healthz").status_code == 200


def test_responses_are_not_cached_or_sniffed(client, engine) -> None:
    response = client.get("/v1/captions", headers=bearer(engine, "read"))
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


def test_captions_belong_to_the_right_image(client, engine) -> None:
    headers = bearer(engine, "read")
    first, second = seed(engine, 2)
    body = client.get(f"/v1/images/{second}/captions", headers=headers).json()
    assert {c["fingerprint"] for c in body["captions"]} == {second} and body["image"]["fingerprint"] == second
    with read_session(engine) as session:
        asset = session.exec(select(Asset).where(Asset.fingerprint == second)).one()
        own = {c.id: c.text for c in session.exec(select(Caption).where(Caption.asset_id == asset.id)).all()}
    # the second image's captions, by id and text: none of the first image's ("red shirt 0")
    assert {c["id"]: c["text"] for c in body["captions"]} == own
    assert sorted(own.values()) == ["a red shirt 1", "red shirt 1"]
    assert client.get(f"/v1/images/{first}/captions", headers=headers).json()["captions"][0]["text"].endswith(" 0")
