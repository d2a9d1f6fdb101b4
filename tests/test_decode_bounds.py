"""Huge-but-tiny images (a 97 KB PNG of 100 MP): reduced early, and few full-size decodes at once."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from catalogcap import images
from tests.factories import poll

ROOT = Path(__file__).resolve().parents[1]


def _concurrent_decodes(paths: list[Path], monkeypatch: pytest.MonkeyPatch) -> int:
    """How many decodes are in flight at once when every path is loaded from its own thread.

    Each decode is held until every thread is either decoding or queued for a large-decode
    slot, so the count is read at the moment of most concurrency, with no timing window."""
    lock, state = threading.Lock(), {"now": 0, "queued": 0}
    release = threading.Event()
    real_decode, slots = images._decode, images._large_decodes

    class CountingSlots:
        def __enter__(self):
            with lock:
                state["queued"] += 1
            slots.acquire()
            with lock:
                state["queued"] -= 1

        def __exit__(self, *exc):
            slots.release()

    def decode(image: Image.Image) -> None:
        with lock:
            state["now"] += 1
        release.wait(60)
        try:
            real_decode(image)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(images, "_decode", decode)
    monkeypatch.setattr(images, "_large_decodes", CountingSlots())
    threads = [threading.Thread(target=images.load, args=(path,), kwargs={"target_size": 384}) for path in paths]
    for thread in threads:
        thread.start()
    try:
        poll(lambda: state["now"] + state["queued"] == len(paths), 60, "every load to decode or queue")
        most = state["now"]
    finally:
        release.set()
        for thread in threads:
            thread.join(60)
    return most


def test_large_decodes_are_bounded_small_ones_are_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    large, small = [], []
    for n in range(5):
        large.append(tmp_path / f"large-{n}.png")
        Image.new("L", (5000, 4000), n * 40).save(large[-1])  # 20 MP, a few KB
        small.append(tmp_path / f"small-{n}.png")
        Image.new("RGB", (200, 100), "red").save(small[-1])
    assert _concurrent_decodes(large, monkeypatch) == images.LARGE_DECODES
    assert _concurrent_decodes(small, monkeypatch) > images.LARGE_DECODES


def test_early_reduction_gives_the_same_picture(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    gradient = Image.linear_gradient("L").resize((2000, 1500))
    Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.ROTATE_180), gradient)).save(path)
    reference = Image.open(path).convert("RGB")
    expected = reference.reduce(min(reference.size) // 384)
    got = images.load(path, target_size=384)
    assert got.size == expected.size and got.tobytes() == expected.tobytes()


RSS_PROBE = """
import resource, sys, threading
from catalogcap import images
from tests.factories import poll
def peak(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
base = peak()
threads = [threading.Thread(target=images.load, args=(p,), kwargs={"target_size": 384}) for p in sys.argv[1:]]
for t in threads: t.start()
for t in threads: t.join()
print(peak() - base)
"""


def test_four_100_megapixel_pngs_at_once_cost_two_buffers(tmp_path: Path) -> None:
    paths = []
    for n in range(4):
        paths.append(tmp_path / f"bomb-{n}.png")
        Image.new("L", (10000, 10000), 40 * n).save(paths[-1])
    assert paths[0].stat().st_size < 200_000  # a small file, a 100 MB decode
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", RSS_PROBE, *map(str, paths)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    grown_mb = float(done.stdout)
    # two 100 MB buffers at a time (about 200 MB); four at once, as before, would be 400 MB or more
    assert grown_mb < 300, f"peak RSS grew by {grown_mb:.0f} MB"
