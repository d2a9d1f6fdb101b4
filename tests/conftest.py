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
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> Path:
    """A fresh CATALOGCAP_HOME using the tiny model, with small generation budgets."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CATALOGCAP_HOME", str(home))
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
