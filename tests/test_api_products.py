"""Product data sent with an image over HTTP: stored as the image's "api" row, alt text as human
text, the client's file name kept as a name only; bad fields are 422 problems that keep nothing."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlmodel import select

from catalogcap.api.app import create_app
from catalogcap.products import context_for
from catalogcap.store.database import read_session
from catalogcap.store.models import Asset, AssetPath, Caption, Product
from tests.conftest import make_image
from tests.factories import RecordingHooks, assert_problem, bearer


def image_bytes(color: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
def client(settings, engine, tmp_path) -> Iterator[TestClient]:
    settings.api.roots = [tmp_path / "catalog"]
    (tmp_path / "catalog").mkdir()
    with TestClient(create_app(settings, engine, run_worker=False, hooks=RecordingHooks()),
                    raise_server_exceptions=False) as client:
        yield client


def post(client, headers, data: bytes | None = None, **form):
    files = {"file": ("x.jpg", data, "image/jpeg")} if data is not None else None
    return client.post("/v1/images", headers=headers, files=files, data=form)


def state(engine, fingerprint: str) -> tuple[Product | None, Caption | None, list[AssetPath]]:
    with read_session(engine) as session:
        asset = session.exec(select(Asset).where(Asset.fingerprint == fingerprint)).one()
        row = session.exec(select(Product).where(Product.key == f"api:{asset.id}")).first()
        alt = session.exec(select(Caption).where(Caption.asset_id == asset.id, Caption.kind == "alt_text")).first()
        paths = list(session.exec(select(AssetPath).where(AssetPath.asset_id == asset.id)).all())
        return row, alt, paths


def test_upload_with_product_data(client, engine) -> None:
    headers = bearer(engine, "review")
    response = post(client, headers, image_bytes("red"), sku="AL-1", title="Arc lamp", brand="NordLight",
                    fields=json.dumps({"Colour": "red", "Fit / Cut": "tall"}), alt_text="Red arc lamp",
                    source_name="IMG 0042.JPG")
    assert response.status_code == 202, response.text
    fingerprint = response.json()["fingerprint"]
    row, alt, (path,) = state(engine, fingerprint)
    assert (row.source, row.sku, row.title, row.brand, row.color, row.fields) == (
        "api", "AL-1", "Arc lamp", "NordLight", "red", {"fit_cut": "tall"})
    assert (alt.text, alt.state, alt.source) == ("Red arc lamp", "accepted", "api")
    assert path.source_name == "IMG 0042.JPG" and Path(path.path).name == f"{fingerprint}.jpg"
    with read_session(engine) as session:
        assert context_for(session, row.asset_id).fields["title"] == "Arc lamp"

    again = post(client, headers, image_bytes("red"), title="Floor lamp", source_name="lamp.jpg")
    assert again.status_code == 200
    row, _alt, (path,) = state(engine, fingerprint)
    assert (row.title, row.sku, path.source_name) == ("Floor lamp", None, "lamp.jpg")  # the latest request's data


def test_registered_path_with_product_data(client, engine, tmp_path) -> None:
    image = make_image(tmp_path / "catalog" / "mug.jpg", "blue")
    response = post(client, bearer(engine, "admin"), path=str(image), title="Blue mug")
    assert response.status_code == 202, response.text
    row, alt, _paths = state(engine, response.json()["fingerprint"])
    assert row.title == "Blue mug" and alt is None


@pytest.mark.parametrize(("form", "where"), [
    ({"fields": "[1, 2]"}, "fields: must be a JSON object"),
    ({"fields": json.dumps({"color": 3})}, "fields.color"),
    ({"fields": json.dumps({f"k{i}": "v" for i in range(101)})}, "fields"),
    ({"fields": json.dumps({"notes": "x" * (10 * 1024 + 1)})}, "over 10,240 bytes"),
    ({"fields": json.dumps({"!!!": "x"})}, "needs letters or digits"),
    ({"source_name": "../../etc/passwd"}, "source_name"),
    ({"source_name": ".."}, "must be a file name"),
    ({"title": "   "}, "must not be blank"),
])
def test_bad_product_data_is_a_422_and_keeps_nothing(client, engine, form, where) -> None:
    body = assert_problem(post(client, bearer(engine, "review"), image_bytes("green"), **form), 422,
                          "invalid_request")
    assert where in body["detail"]
    with read_session(engine) as session:
        assert session.exec(select(Asset)).all() == []


def test_alt_text_over_the_limit_is_refused(client, engine) -> None:
    body = assert_problem(post(client, bearer(engine, "review"), image_bytes("green"), alt_text="word " * 40), 422,
                          "text_too_long")
    assert body["limit"] == 125


def test_openapi_documents_the_product_fields(client, engine) -> None:
    spec = client.get("/openapi.json", headers=bearer(engine, "read")).json()
    body = spec["paths"]["/v1/images"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    if "$ref" in body:
        body = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert {"sku", "title", "brand", "fields", "alt_text", "source_name"} <= set(body["properties"])
