"""Shared fixtures: a tiny BLIP built offline once per session, temp homes and stores."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "pillow-images"

# The modules that also run on PostgreSQL when the switch asks for it (store, queue, API, watch,
# workers, products, review, services, plugins, webhook outbox, training); everything runs on SQLite. A test
# pinned to SQLite's own behaviour (its write lock, EXPLAIN QUERY PLAN, its SQL) is `sqlite_only`.
POSTGRES_CORE = {"test_store.py", "test_watch.py", "test_api_http.py", "test_workers.py", "test_pg.py",
                 "test_products_import.py", "test_products_intake.py", "test_api_products.py",
                 "test_consistency.py", "test_lifecycle.py", "test_review_decisions.py", "test_review_queue.py",
                 "test_services.py", "test_plugins.py", "test_review_spreadsheet.py", "test_review_stats.py",
                 "test_read_ahead.py", "test_captions_paging.py", "test_export_human.py", "test_training_policy.py",
                 "test_webhook.py", "test_review_writer.py", "test_review_app.py", "test_intake_scale.py",
                 "test_training.py"}
BACKENDS = ("sqlite", "postgresql")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--db", choices=("sqlite", "postgresql", "both"),
                     default=os.environ.get("CATALOGCAP_TEST_DATABASE", "sqlite"),
                     help="store backend(s) of the core tests; postgresql starts a throw-away server"
                          " (default: $CATALOGCAP_TEST_DATABASE or sqlite)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: checks SQLite file behaviour; not run on PostgreSQL")
    config.addinivalue_line("markers", "postgresql: runs against the throw-away PostgreSQL server")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_backend" not in metafunc.fixturenames:
        return
    choice = metafunc.config.getoption("--db")
    backends = ["sqlite"]
    core = metafunc.definition.path.name in POSTGRES_CORE
    if core and metafunc.definition.get_closest_marker("sqlite_only") is None:
        backends = {"sqlite": ["sqlite"], "postgresql": ["postgresql"], "both": list(BACKENDS)}[choice]
    if metafunc.definition.get_closest_marker("postgresql") is not None:
        backends = ["postgresql"]
    if backends != ["sqlite"]:  # plain SQLite runs keep their test ids
        metafunc.parametrize("db_backend", backends, indirect=True, ids=backends)


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest):
    """A throw-away PostgreSQL server for the whole session (skips when it cannot run here)."""
    from tests import pgserver

    if request.config.getoption("--db") == "sqlite":
        pytest.skip("PostgreSQL runs with --db postgresql or --db both (CATALOGCAP_TEST_DATABASE)")
    reason = pgserver.why_not()
    if reason is not None:
        pytest.skip(reason)
    server = pgserver.Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def db_backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture
def store_url(db_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store on the test's backend: a temp SQLite file or a fresh PostgreSQL database."""
    if db_backend == "postgresql":
        return request.getfixturevalue("pg_server").create_database()
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CATALOGCAP_* from the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("CATALOGCAP_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised BLIP of tiny dimensions, saved like a hub model (safetensors)."""
    from catalogcap.demo.tiny import build_tiny_blip

    out = tmp_path_factory.mktemp("tiny-blip")
    build_tiny_blip(out, seed=0)
    return out


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path, db_backend: str,
         request: pytest.FixtureRequest) -> Path:
    """A fresh CATALOGCAP_HOME using the tiny model, with small generation budgets; on PostgreSQL
    its store is a fresh database of the throw-away server."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CATALOGCAP_HOME", str(home))
    if db_backend == "postgresql":
        monkeypatch.setenv("CATALOGCAP_DATABASE_URL", request.getfixturevalue("store_url"))
    monkeypatch.setenv("CATALOGCAP_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("CATALOGCAP_GENERATION__ALT_TEXT__MAX_NEW_TOKENS", "8")
    monkeypatch.setenv("CATALOGCAP_GENERATION__DESCRIPTION__MAX_NEW_TOKENS", "12")
    monkeypatch.setenv("CATALOGCAP_GENERATION__DESCRIPTION__MIN_NEW_TOKENS", "2")
    monkeypatch.setenv("CATALOGCAP_GENERATION__DESCRIPTION__NUM_BEAMS", "2")
    return home


@pytest.fixture
def settings(home: Path):
    from catalogcap.settings import load_settings

    return load_settings()


@pytest.fixture
def engine(settings):
    from catalogcap.store.database import create_store_engine

    engine = create_store_engine(settings.db_url)
    yield engine
    engine.dispose()


def make_image(path: Path, color: str = "red", size: tuple[int, int] = (64, 48), fmt: str | None = None,
               **save_kwargs) -> Path:
    """A small product-like picture: a coloured block on white."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, "white")
    w, h = size
    image.paste(Image.new("RGB", (max(w // 2, 1), max(h // 2, 1)), color), (w // 4, h // 4))
    image.save(path, format=fmt, **save_kwargs)
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder of good product photos in several formats."""
    folder = tmp_path / "photos"
    make_image(folder / "red-shirt.jpg", "red")
    make_image(folder / "blue-mug.png", "blue")
    make_image(folder / "green-shoe.webp", "green")
    make_image(folder / "sub" / "yellow-cap.tiff", "yellow")
    return folder
