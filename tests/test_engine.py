"""The captioning engine on real tiny BLIPs built offline: same captions, faster paths, batch memory."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn
from transformers import BlipForConditionalGeneration, BlipProcessor

from catalogcap import images
from catalogcap.captioner import Captioner
from catalogcap.captioner.engine import BatchMemory, EngineError, largest_batch, usable
from catalogcap.captioner.fast import SdpaBlipAttention, SdpaBlipTextSelfAttention
from catalogcap.captioner.generate import generate_kwargs
from catalogcap.captioner.model import load_model
from catalogcap.captioner.pixels import PixelMaker, PixelSpec, Prefetcher
from catalogcap.demo import catalog
from catalogcap.errors import SettingsError
from catalogcap.settings import KINDS, Settings, load_settings

DEMO_MODEL = Path(__file__).resolve().parents[1] / "catalogcap" / "demo" / "model"


def _pictures(count: int = 5) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    noise = [Image.fromarray(rng.integers(0, 256, (40 + 7 * i, 50, 3), dtype=np.uint8)) for i in range(count - 2)]
    return [*noise, Image.new("RGB", (80, 60), "red"), Image.new("RGB", (33, 90), "navy")][:count]


def _photo(path: Path, size: tuple[int, int], index: int = 0) -> Path:
    """A demo-catalog product drawn large, with a vignette and noise like a studio photo, as a JPEG."""
    item = catalog.products(index + 1, seed=5)[index]
    drawing = np.asarray(catalog.draw(item).convert("RGB").resize(size), dtype=np.float32)
    noise = np.random.default_rng(index).normal(0.0, 6.0, drawing.shape)
    Image.fromarray(np.clip(drawing + noise, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=90)
    return path


def _reference_captions(model_dir: Path, settings: Settings, pictures: list[Image.Image]) -> dict[str, list[str]]:
    """BLIP's own `generate`, eager attention, fresh from disk: what the exact path must reproduce."""
    model = BlipForConditionalGeneration.from_pretrained(model_dir, use_safetensors=True).eval()
    processor = BlipProcessor.from_pretrained(model_dir)
    expected = {}
    for kind in KINDS:
        gen = settings.generation.for_kind(kind)
        prompt = gen.prompt or None
        inputs = processor(images=pictures, text=[prompt] * len(pictures) if prompt else None, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**inputs, **generate_kwargs(gen))
        skip = inputs["input_ids"].shape[1] - 1 if prompt else 1
        expected[kind] = processor.tokenizer.batch_decode(out[:, skip:], skip_special_tokens=True)
    return expected


# ------------------------------------------------------------------ settings


def test_engine_settings_defaults_env_and_errors(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = load_settings().engine
    assert (engine.sdpa, engine.fast_decode, engine.int8, engine.compile, engine.max_batch) == (
        True, True, False, False, 0)
    monkeypatch.setenv("CATALOGCAP_ENGINE__INT8", "true")
    assert load_settings().engine.int8 is True
    monkeypatch.setenv("CATALOGCAP_ENGINE__REDUCING_GAP", "0.5")
    with pytest.raises(SettingsError, match=r"engine\.reducing_gap.*0\.5"):
        load_settings()


def test_config_show_lists_engine_settings(home: Path) -> None:
    import json

    from catalogcap.cli import cli

    result = CliRunner().invoke(cli, ["--set", "engine.int8=true", "config", "show", "--json"],
                                catch_exceptions=False)
    data = json.loads(result.output)
    assert data["engine.int8"] == {"value": True, "source": "command line"}
    assert data["engine.sdpa"] == {"value": True, "source": "default"}


# ------------------------------------------------------------------ pixels


@pytest.mark.parametrize("size", [32, 384])
def test_pixel_maker_equals_blip_image_processor_bit_for_bit(tiny_model_dir: Path, size: int) -> None:
    processor = BlipProcessor.from_pretrained(tiny_model_dir).image_processor
    processor.size = {"height": size, "width": size}
    maker = PixelMaker(PixelSpec.from_processor(processor))
    gradient = Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (300, 2))[:, :500]).convert("RGB")
    for picture in [*_pictures(), gradient, Image.new("L", (20, 20), 77), Image.new("RGB", (size, size), "teal")]:
        expected = processor(images=picture.convert("RGB"), return_tensors="pt").pixel_values[0]
        assert torch.equal(maker(picture), expected)


def test_fast_decode_is_close_to_full_decode(tmp_path: Path) -> None:
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    processor = BlipImageProcessorPil()  # 384 px, like the real model
    path = _photo(tmp_path / "big.jpg", (3200, 2400))
    assert images.load(path, target_size=768).size == (1600, 1200)  # the JPEG was draft-decoded at 1/2
    with Image.open(path) as image:
        reference = processor(images=image.convert("RGB"), return_tensors="pt").pixel_values[0]
    to_steps = torch.tensor(processor.image_std).view(3, 1, 1) * 255
    steps = (PixelMaker(PixelSpec.from_processor(processor)).load(path) - reference).abs() * to_steps
    assert steps.max().item() <= 8.0  # 0-255 steps; benchmarks/decode.py reports these figures
    assert steps.mean().item() <= 0.5


def test_prefetcher_decodes_the_next_batch_while_the_model_works() -> None:
    started: dict[int, threading.Event] = {i: threading.Event() for i in range(7)}

    def load(i: int) -> torch.Tensor:
        started[i].set()
        if i == 4:
            raise images.ImageRejected(f"{i}.jpg", "corrupt", "broken on purpose")
        return torch.full((1,), float(i))

    batches = Prefetcher(load, batch_size=3, threads=2, catch=(images.ImageRejected,)).batches(range(7))
    first = next(batches)
    assert started[5].wait(timeout=10)  # item 5 (second batch) is being decoded before we ask for it
    rest = list(batches)
    assert first.items == [0, 1, 2] and first.pixels is not None and first.pixels.flatten().tolist() == [0, 1, 2]
    assert [b.items for b in rest] == [[3, 5], [6]]
    assert [(item, type(exc)) for item, exc in rest[0].failed] == [(4, images.ImageRejected)]


def test_prefetcher_propagates_unexpected_errors() -> None:
    def load(i: int) -> torch.Tensor:
        raise RuntimeError("a bug, not a bad image")

    with pytest.raises(RuntimeError, match="a bug"):
        list(Prefetcher(load, batch_size=2, catch=(images.ImageRejected,)).batches(range(3)))


# ------------------------------------------------------------------ captioning


def test_exact_path_equals_eager_blip_generate(settings: Settings, tiny_model_dir: Path) -> None:
    settings.engine.max_batch = 2  # 5 pictures: three model calls
    captioner = Captioner.from_settings(settings)
    kinds = {type(m) for m in captioner.model.modules()}
    assert {SdpaBlipAttention, SdpaBlipTextSelfAttention} <= kinds
    results = captioner.caption_images(_pictures())
    expected = _reference_captions(tiny_model_dir, settings, _pictures())
    for kind in KINDS:
        assert [r.raw[kind] for r in results] == expected[kind]


def test_caption_files_matches_caption_images_and_reports_rejections(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    paths = []
    for i, picture in enumerate(_pictures()):
        picture.save(folder / f"{i}.png")
        paths.append(folder / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    paths.insert(2, folder / "broken.jpg")
    captioner = Captioner.from_settings(settings)
    results = dict(captioner.caption_files(paths, batch_size=2))
    assert set(results) == set(paths)
    rejected = results.pop(folder / "broken.jpg")
    assert isinstance(rejected, images.ImageRejected) and rejected.code == "corrupt"
    direct = captioner.caption_images([images.load(p) for p in results])
    assert [r.raw for r in results.values()] == [d.raw for d in direct]


def test_kinds_with_the_same_prompt_and_settings_share_one_generate(settings: Settings,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    captioner = Captioner.from_settings(settings)
    calls: list[int] = []
    original = captioner.model.text_decoder.generate

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(captioner.model.text_decoder, "generate", counting)
    captioner.caption_images(_pictures(3))
    assert calls == [3, 3]  # different prompts: one call per kind
    calls.clear()
    settings.generation.description = settings.generation.alt_text.model_dump()
    captioner = Captioner(captioner.loaded, settings)  # a captioner's settings are fixed when it is made
    shared = captioner.caption_images(_pictures(3))
    assert calls == [3]
    assert all(r.raw["alt_text"] == r.raw["description"] for r in shared)


def test_generation_record_holds_the_engine(settings: Settings) -> None:
    settings.engine.decode_threads = 3
    record = Captioner.from_settings(settings).generation_record("alt_text")
    assert record["engine"] == {**settings.engine.model_dump(), "device": "cpu"}
    assert record["engine"]["sdpa"] is True and record["engine"]["decode_threads"] == 3


def test_engine_off_is_plain_transformers(settings: Settings) -> None:
    settings.engine.sdpa = False
    settings.engine.fast_decode = False
    captioner = Captioner.from_settings(settings)
    assert not any(isinstance(m, (SdpaBlipAttention, SdpaBlipTextSelfAttention)) for m in captioner.model.modules())
    picture = _pictures(1)[0]
    expected = captioner.processor.image_processor(images=picture, return_tensors="pt").pixel_values[0]
    assert torch.equal(captioner.prepare(picture), expected)
    assert captioner.generation_record("description")["engine"]["sdpa"] is False


def test_a_model_loaded_without_engine_gets_it_from_the_captioner(settings: Settings) -> None:
    loaded = load_model(settings.model, device="cpu", dtype="float32")
    assert loaded.engine is None
    captioner = Captioner(loaded, settings)
    assert captioner.loaded.engine is not None and captioner.loaded.engine.sdpa
    assert any(isinstance(m, SdpaBlipAttention) for m in captioner.model.modules())


def test_int8_captions_agree_with_exact_on_the_demo_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = catalog.products(60, seed=99)
    catalog.write_catalog(tmp_path / "catalog", items)
    paths = [tmp_path / "catalog" / catalog.filename_for(item) for item in items]
    common: dict[str, Any] = {"home": tmp_path / "home", "model": str(DEMO_MODEL), "device": "cpu",
                              "generation": {"alt_text": {"num_beams": 1}, "description": {"num_beams": 1}}}
    exact = Captioner.from_settings(Settings(**common))
    quantized = Captioner.from_settings(Settings(**common, engine={"int8": True}))
    assert not any(type(m) is nn.Linear for m in quantized.model.modules())
    assert quantized.generation_record("alt_text")["engine"]["int8"] is True
    a = {p: r.raw for p, r in exact.caption_files(paths)}
    b = {p: r.raw for p, r in quantized.caption_files(paths)}
    share = sum(a[p] == b[p] for p in paths) / len(paths)
    with capsys.disabled():
        print(f"\nint8 vs exact on the demo model: {share:.0%} of {len(paths)} images identical (both kinds)")
    assert share >= 0.95
    assert "shirt" in " ".join(r["alt_text"] for r in a.values()) or len(set(map(str, a.values()))) > 5


@pytest.mark.slow
def test_compiled_vision_encoder_gives_the_same_captions(settings: Settings) -> None:
    pictures = _pictures(3)
    plain = Captioner.from_settings(settings).caption_images(pictures)
    settings.engine.compile = True
    compiled = Captioner.from_settings(settings)
    assert compiled.generation_record("alt_text")["engine"]["compile"] is True
    assert [r.raw for r in compiled.caption_images(pictures)] == [r.raw for r in plain]


# ------------------------------------------------------------------ batch size


class _Memory:
    """Stands in for a GPU: a batch of more than `capacity` images runs out of memory."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.tried: list[int] = []

    def __call__(self, n: int) -> None:
        self.tried.append(n)
        if n > self.capacity:
            raise torch.OutOfMemoryError(f"{n} images do not fit")


@pytest.mark.parametrize(("capacity", "limit", "low", "high"), [
    (100, 4096, 88, 100), (5000, 1024, 1024, 1024), (5, 4096, 5, 5), (8, 4096, 8, 8), (3000, 4096, 2625, 3000),
])
def test_largest_batch_doubles_then_bisects(capacity: int, limit: int, low: int, high: int) -> None:
    memory = _Memory(capacity)
    found = largest_batch(memory, start=8, limit=limit)
    assert low <= found <= high
    assert all(n <= limit for n in memory.tried) and len(memory.tried) <= 13


def test_largest_batch_fails_clearly_when_nothing_fits() -> None:
    with pytest.raises(EngineError, match="not even one image"):
        largest_batch(_Memory(0))


REUSE_PROBE = """
import resource, sys, torch
from catalogcap.captioner.engine import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory() is True
size = 40 * 2**20  # above glibc's 32 MiB mmap ceiling
blocks = [torch.ones(size, dtype=torch.uint8) for _ in range(3)]
del blocks
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
again = [torch.ones(size, dtype=torch.uint8) for _ in range(3)]
assert all(int(block[-1]) == 1 for block in again)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_kept_in_the_process() -> None:
    """Big blocks freed and allocated again reuse the pages the process has: far fewer page
    faults than glibc's default, which returns them and faults every page in afresh. Each side
    runs in a fresh process, so what earlier tests allocated cannot tip the count."""
    import subprocess

    def faults(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", REUSE_PROBE, mode], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
        assert done.returncode == 0, done.stderr
        return int(done.stdout.split()[-1])

    kept, default = faults("keep"), faults("default")
    assert kept < default / 2, f"{kept} page faults with freed memory kept, {default} without"


def test_usable_batch_keeps_headroom() -> None:
    assert usable(100) == 88 and usable(8) == 7 and usable(1) == 1


def test_probed_batch_is_remembered_in_home(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    captioner = Captioner.from_settings(settings)
    assert captioner.probe_max_batch(limit=16) == usable(16)
    memory = BatchMemory(settings.home / "engine.json")
    assert memory.get(captioner.batch_key()) == usable(16)
    again = Captioner.from_settings(settings)

    def no_probe(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the remembered batch should have been used")

    monkeypatch.setattr(again, "_caption_batch", no_probe)
    assert again.probe_max_batch(limit=16) == usable(16)
    (settings.home / "engine.json").write_text("{not json")
    assert memory.get(captioner.batch_key()) is None  # a broken file means: probe again


def test_worker_decodes_in_its_pool_and_hands_the_model_tensors(settings: Settings, engine: Any,
                                                                  photos: Path) -> None:
    from sqlmodel import select

    from catalogcap.intake import scan
    from catalogcap.store.database import read_session
    from catalogcap.store.models import Caption
    from catalogcap.worker import Worker

    captioner = Captioner.from_settings(settings)
    handed: list[type] = []
    original = captioner.caption_images

    def recording(pictures: list[Any]) -> Any:
        handed.extend(type(p) for p in pictures)
        return original(pictures)

    captioner.caption_images = recording  # type: ignore[method-assign]
    scan(engine, [photos], settings)
    worker = Worker(engine, settings, captioner_factory=lambda *_: captioner)
    try:
        assert worker.drain().captioned == 4
    finally:
        worker.close()
    assert handed == [torch.Tensor] * 4
    with read_session(engine) as session:
        captions = session.exec(select(Caption)).all()
    assert len(captions) == 8 and all(c.generation["engine"]["fast_decode"] for c in captions)


def test_worker_loop_survives_an_error_and_keeps_captioning(settings: Settings, engine: Any, photos: Path) -> None:
    import time

    from sqlmodel import select

    from catalogcap.intake import scan
    from catalogcap.store.database import read_session
    from catalogcap.store.models import Job
    from catalogcap.worker import Worker

    captioner = Captioner.from_settings(settings)
    calls: list[int] = []

    def flaky(*_: Any) -> Captioner:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("model server hiccup")
        return captioner

    scan(engine, [photos], settings)
    worker = Worker(engine, settings, captioner_factory=flaky)
    stop, wake = threading.Event(), threading.Event()
    loop = threading.Thread(target=worker.run_until, args=(stop, wake))
    loop.start()
    try:
        deadline = time.monotonic() + 60
        while worker.captioned_total < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        wake.set()
        loop.join(30)
        worker.close()
    assert not loop.is_alive()
    assert worker.captioned_total == 4 and worker.errors == 1
    with read_session(engine) as session:
        jobs = session.exec(select(Job)).all()
    # the failed model load cost the jobs no attempt: they went straight back to the queue
    assert [(j.state, j.attempts) for j in jobs] == [("done", 1)] * 4
