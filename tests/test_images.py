"""catalogcap.images: every file a photo folder receives is an upright RGB picture or a readable rejection."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image, ImageFile, ImageOps, JpegImagePlugin

from catalogcap import images
from catalogcap.errors import CatalogcapError
from catalogcap.images import REASONS, ImageInfo, ImageRejected, load, load_bytes, probe, probe_bytes

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "pillow-images"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"test corpus not present at {CORPUS}")
# Pillow warns about many of the corpus's damaged files; the outcome is what is tested, not the chatter.
quiet_corpus = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::PIL.Image.DecompressionBombWarning")

RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


# --------------------------------------------------------------------------- helpers


def quadrants(size: tuple[int, int] = (60, 30)) -> Image.Image:
    """Red, green / blue, white quadrants: every flip and rotation of it looks different."""
    w, h = size
    image = Image.new("RGB", size, WHITE)
    image.paste(RED, (0, 0, w // 2, h // 2))
    image.paste(GREEN, (w // 2, 0, w, h // 2))
    image.paste(BLUE, (0, h // 2, w // 2, h))
    return image


def save(image: Image.Image, path: Path, fmt: str | None = None, **kwargs: object) -> Path:
    image.save(path, format=fmt, **kwargs)
    return path


def rejection(func, *args, **kwargs) -> ImageRejected:  # type: ignore[no-untyped-def]
    with pytest.raises(ImageRejected) as caught:
        func(*args, **kwargs)
    return caught.value


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` RGB pixels and holds none."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b""))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def icc_swapped_red_green() -> bytes:
    """A valid ICC v2 RGB profile whose red primary is sRGB's green and vice versa.

    A pure red pixel tagged with it is, correctly converted, a pure green in sRGB; a
    loader that ignores the profile leaves it red.
    """

    def s15(*values: float) -> bytes:
        return b"".join(struct.pack(">i", round(v * 65536)) for v in values)

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + bytes(4) + s15(x, y, z)

    text = b"Swapped red and green\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(8) + bytes(3) + bytes(67)
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(2.2 * 256))
    tags = [(b"desc", desc), (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
            (b"rXYZ", xyz(0.3851, 0.7169, 0.0971)), (b"gXYZ", xyz(0.4361, 0.2225, 0.0139)),
            (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset = 128 + 4 + 12 * len(tags)
    table, data = struct.pack(">I", len(tags)), b""
    for signature, body in tags:
        body += bytes(-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    header = (struct.pack(">I", offset + len(data)) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ "
              + bytes(12) + b"acsp" + bytes(24) + bytes(4) + s15(0.9642, 1.0, 0.8249) + bytes(48))
    assert len(header) == 128
    return header + table + data


def near(a: tuple[int, ...], b: tuple[int, ...], tolerance: int = 12) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------- the error


def test_rejection_reads_as_path_reason_detail() -> None:
    exc = ImageRejected(Path("shop/shoe.jpg"), "corrupt", "OSError: image file is truncated")
    assert isinstance(exc, CatalogcapError)
    assert str(exc) == "shop/shoe.jpg: corrupt or truncated image: OSError: image file is truncated"
    assert (exc.path, exc.code, exc.reason) == (Path("shop/shoe.jpg"), "corrupt", REASONS["corrupt"])
    again = pickle.loads(pickle.dumps(exc))  # crosses process pools intact
    assert (again.path, again.code, again.detail, str(again)) == (exc.path, exc.code, exc.detail, str(exc))
    with pytest.raises(ValueError, match="unknown rejection code"):
        ImageRejected("x.jpg", "broken", "?")


def test_supported_formats_are_the_allowlist() -> None:
    assert {"JPEG", "MPO", "PNG", "WEBP", "TIFF", "GIF", "BMP"} <= images.SUPPORTED_FORMATS
    assert images.SUPPORTED_FORMATS - {"JPEG", "MPO", "PNG", "WEBP", "TIFF", "GIF", "BMP"} <= {"AVIF"}
    assert not {"EPS", "PDF", "ICO", "PSD", "PCX"} & images.SUPPORTED_FORMATS


# --------------------------------------------------------------------------- rejections


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "blank-shirt.jpg"
    path.write_bytes(b"")
    for func in (probe, load):
        exc = rejection(func, path)
        assert exc.code == "empty" and "blank-shirt.jpg" in str(exc)
    assert rejection(load_bytes, b"", name="upload.png").code == "empty"


EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(500)


@pytest.mark.parametrize("content", [b"a shopping list, not a photo\n" * 20, EXE], ids=["text", "exe"])
def test_not_an_image_despite_the_name(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "red-shirt.jpg"
    path.write_bytes(content)
    for func in (probe, load):
        exc = rejection(func, path)
        assert exc.code == "not_an_image", str(exc)
        assert "red-shirt.jpg" in str(exc) and "not an image" in str(exc)


def test_truncated_jpeg_is_corrupt_not_grey(tmp_path: Path) -> None:
    whole = save(quadrants((400, 300)), tmp_path / "whole.jpg", quality=90)
    half = tmp_path / "half-mug.jpg"
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert probe(half) == ImageInfo("JPEG", 400, 300, 1, "RGB")  # the header is intact
    exc = rejection(load, half)
    assert exc.code == "corrupt" and "half-mug.jpg" in str(exc) and "truncated" in exc.detail
    assert rejection(load_bytes, half.read_bytes(), name="half-mug.jpg").code == "corrupt"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_missing_directory_and_fifo_are_unreadable(tmp_path: Path) -> None:
    exc = rejection(load, tmp_path / "gone.jpg")
    assert exc.code == "unreadable" and "gone.jpg" in str(exc)
    assert rejection(probe, tmp_path).code == "unreadable"
    if hasattr(os, "mkfifo"):  # opening a pipe for reading would block forever
        os.mkfifo(tmp_path / "pipe.jpg")
        assert rejection(load, tmp_path / "pipe.jpg").code == "unreadable"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_permission_denied_is_unreadable(tmp_path: Path) -> None:
    path = save(quadrants(), tmp_path / "locked.png")
    path.chmod(0)
    try:
        exc = rejection(load, path)
    finally:
        path.chmod(0o644)
    assert exc.code == "unreadable" and "Permission denied" in exc.detail


def test_os_errors_while_reading_are_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save(quadrants(), tmp_path / "locked.png")

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(images, "open_regular", denied)
    exc = rejection(probe, path)
    assert exc.code == "unreadable" and exc.detail == "PermissionError: Permission denied"
    assert "locked.png" in str(exc)


def test_too_large_by_bytes(tmp_path: Path) -> None:
    path = save(quadrants(), tmp_path / "big.png")
    assert rejection(probe, path, max_bytes=100).code == "too_large"
    assert rejection(load_bytes, path.read_bytes(), name="big.png", max_bytes=100).code == "too_large"
    assert load(path, max_bytes=path.stat().st_size).size == (60, 30)


@pytest.mark.parametrize("fmt", ["ICO", "PCX", "TGA", "PDF", "PPM", "SGI"])
def test_real_images_in_other_formats_are_unsupported(tmp_path: Path, fmt: str) -> None:
    path = save(quadrants(), tmp_path / f"logo.{fmt.lower()}", fmt)
    for func in (probe, load):
        exc = rejection(func, path)
        assert exc.code == "unsupported_format" and fmt in exc.detail and "logo" in str(exc)


def test_heif_is_named(tmp_path: Path) -> None:
    data = struct.pack(">I", 24) + b"ftypheic" + bytes(12) + bytes(100)
    exc = rejection(probe_bytes, data, name="IMG_0001.HEIC")
    assert exc.code == "unsupported_format" and "HEIF" in exc.detail


def test_eps_is_never_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object) -> None:
        raise AssertionError("the EPS plugin (Ghostscript) must not be used")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", fail)
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", fail)
    path = tmp_path / "vector.jpg"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n")
    for func in (probe, load):
        exc = rejection(func, path)
        assert exc.code == "unsupported_format" and "EPS" in exc.detail


# --------------------------------------------------------------------------- pixel budgets


def test_bomb_header_is_rejected_fast(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(100_000, 100_000))
    started = time.perf_counter()
    for func in (probe, load):
        assert rejection(func, path).code == "too_many_pixels"
    assert rejection(load_bytes, path.read_bytes(), name="bomb.png").code == "too_many_pixels"
    assert time.perf_counter() - started < 1.0


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_own_pixel_limit_applies_below_pillows(tmp_path: Path) -> None:
    path = tmp_path / "tall.png"
    path.write_bytes(png_header(12_000, 12_000))  # 144 Mpx: Pillow itself only warns
    exc = rejection(load, path, max_pixels=100_000_000)
    assert exc.code == "too_many_pixels" and "12000x12000" in exc.detail and "100,000,000" in exc.detail
    small = save(quadrants(), tmp_path / "small.png")
    assert rejection(probe, small, max_pixels=100).code == "too_many_pixels"
    assert rejection(load, small, max_pixels=100).code == "too_many_pixels"
    assert load(small, max_pixels=60 * 30).size == (60, 30)
    assert Image.MAX_IMAGE_PIXELS == 1024 * 1024 * 1024 // 4 // 3  # global state untouched


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_probe_reads_only_the_header(tmp_path: Path) -> None:
    path = tmp_path / "claims.png"
    path.write_bytes(png_header(12_000, 12_000))  # allowed by a higher limit, but holds no pixels
    started = time.perf_counter()
    assert probe(path, max_pixels=200_000_000) == ImageInfo("PNG", 12_000, 12_000, 1, "RGB")
    assert rejection(load, path, max_pixels=200_000_000).code == "corrupt"
    assert time.perf_counter() - started < 2.0


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_bomb_warning_raised_as_error_maps_to_too_many_pixels(tmp_path: Path) -> None:
    path = tmp_path / "warned.png"
    path.write_bytes(png_header(12_000, 12_000))
    assert rejection(probe, path, max_pixels=10**9).code == "too_many_pixels"


# --------------------------------------------------------------------------- orientation


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_exif_transpose(tmp_path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(quadrants(), tmp_path / f"o{orientation}.jpg", quality=95, exif=exif.tobytes())
    expected = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    got = load(path)
    assert got.mode == "RGB" and got.size == expected.size
    assert got.size == ((30, 60) if orientation >= 5 else (60, 30))
    assert np.abs(np.asarray(got, dtype=int) - np.asarray(expected, dtype=int)).max() <= 2
    assert (probe(path).width, probe(path).height) == got.size
    assert near(got.getpixel((0, 0)), expected.getpixel((0, 0)))


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.parametrize("exif", [b"Exif\x00\x00II*\x00\xff\xff\xff\x7f" + bytes(40), b"Exif\x00\x00garbage"],
                         ids=["ifd-offset-out-of-file", "not-tiff"])
def test_broken_exif_keeps_the_picture_unrotated(tmp_path: Path, exif: bytes) -> None:
    path = save(quadrants(), tmp_path / "broken-exif.jpg", quality=95, exif=exif)
    image = load(path)
    assert image.size == (60, 30) and near(image.getpixel((5, 5)), RED)


def test_orientation_out_of_range_is_ignored(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 9
    path = save(quadrants(), tmp_path / "nine.jpg", quality=95, exif=exif.tobytes())
    assert load(path).size == (60, 30)


# --------------------------------------------------------------------------- colour and modes


def test_cmyk_adobe_inverted_jpeg_comes_out_in_the_right_colours(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (64, 16))
    for i, ink in enumerate([(255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0), (0, 0, 0, 255)]):
        cmyk.paste(ink, (i * 16, 0, i * 16 + 16, 16))
    path = save(cmyk, tmp_path / "cmyk.jpg", quality=95)
    assert b"Adobe" in path.read_bytes()  # libjpeg writes inverted CMYK with an APP14 marker
    junk_profile = save(cmyk, tmp_path / "cmyk-junk-icc.jpg", quality=95, icc_profile=b"not a profile")
    for source in (path, junk_profile):
        image = load(source)
        for i, rgb in enumerate([(0, 255, 255), (255, 0, 255), (255, 255, 0), BLACK]):
            assert near(image.getpixel((i * 16 + 8, 8)), rgb, 24), (source.name, i)


@pytest.mark.parametrize(("mode", "fmt"), [("RGB", "PNG"), ("RGB", "JPEG"), ("RGB", "TIFF"), ("RGBA", "PNG")])
def test_non_srgb_profile_is_converted(tmp_path: Path, mode: str, fmt: str) -> None:
    path = save(Image.new(mode, (16, 16), RED), tmp_path / f"swapped.{fmt.lower()}", fmt,
                icc_profile=icc_swapped_red_green())
    assert Image.open(path).mode == mode
    r, g, b = load(path).getpixel((8, 8))
    assert g > 200 and r < 80 and b < 80, (r, g, b)


def test_unusable_profile_is_not_a_rejection(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (16, 16), RED), tmp_path / "junk-icc.png", icc_profile=b"\x00" * 200)
    assert load(path).getpixel((8, 8)) == RED


def test_srgb_profile_keeps_colours(tmp_path: Path) -> None:
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = save(quadrants(), tmp_path / "srgb.png", icc_profile=srgb)
    assert np.array_equal(np.asarray(load(path)), np.asarray(quadrants()))


def gradient(dtype: str, top: float) -> np.ndarray:
    return np.tile(np.linspace(0, top, 256), (8, 1)).astype(dtype)


@pytest.mark.parametrize(
    ("name", "array", "fmt"),
    [("i16.png", gradient("uint16", 65535), "PNG"), ("i16b.tif", gradient(">u2", 65535), "TIFF"),
     ("i32.tif", gradient("int32", 65535), "TIFF"), ("float.tif", gradient("float32", 1.0), "TIFF"),
     ("float-wide.tif", gradient("float32", 1000.0) - 500, "TIFF")],
)
def test_deep_greys_are_scaled_not_clipped(tmp_path: Path, name: str, array: np.ndarray, fmt: str) -> None:
    path = save(Image.fromarray(array), tmp_path / name, fmt)
    assert Image.open(path).mode in {"I;16", "I;16B", "I", "F"}
    got = np.asarray(load(path))
    row = got[4, :, 0].astype(int)
    assert row[0] <= 3 and row[-1] >= 252, (row[0], row[-1])
    assert 110 < got.mean() < 145
    assert (np.diff(row) >= 0).all()  # a gradient stays a gradient


def test_transparent_regions_come_out_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (10, 0, 20, 10))
    la = Image.new("LA", (20, 10), (0, 0))
    la.paste((0, 255), (10, 0, 20, 10))
    palette = Image.new("P", (20, 10), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.paste(1, (10, 0, 20, 10))
    rgb_key = Image.new("RGB", (20, 10), (1, 2, 3))
    rgb_key.paste(GREEN, (10, 0, 20, 10))
    cases = [
        (save(rgba, tmp_path / "rgba.png"), BLUE),
        (save(rgba, tmp_path / "rgba.webp", lossless=True), BLUE),
        (save(la, tmp_path / "la.png"), BLACK),
        (save(palette, tmp_path / "p.png", transparency=0), RED),
        (save(palette, tmp_path / "p.gif", transparency=0), RED),
        (save(rgb_key, tmp_path / "rgb-trns.png", transparency=(1, 2, 3)), GREEN),
        (save(rgba, tmp_path / "rgba.tif"), BLUE),
    ]
    for path, opaque in cases:
        image = load(path)
        assert image.mode == "RGB"
        assert image.getpixel((2, 5)) == WHITE, path.name
        assert near(image.getpixel((15, 5)), opaque, 4), path.name


def test_half_transparent_red_blends_with_white(tmp_path: Path) -> None:
    path = save(Image.new("RGBA", (8, 8), (255, 0, 0, 128)), tmp_path / "half.png")
    assert near(load(path).getpixel((4, 4)), (255, 127, 127), 2)


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animations_give_the_first_frame(tmp_path: Path, fmt: str) -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in (RED, BLUE, GREEN)]
    path = save(frames[0], tmp_path / f"anim.{fmt.lower()}", fmt, save_all=True, append_images=frames[1:],
                duration=100, loop=0, **({"lossless": True} if fmt == "WEBP" else {}))
    info = probe(path)
    assert info.format == fmt and info.frames == 3
    assert near(load(path).getpixel((16, 16)), RED, 8)


def test_progressive_jpeg(tmp_path: Path) -> None:
    path = save(quadrants((120, 80)), tmp_path / "progressive.jpg", quality=95, progressive=True)
    expected = Image.open(path).convert("RGB")
    assert np.array_equal(np.asarray(load(path)), np.asarray(expected))


@pytest.mark.parametrize(("mode", "fmt"),
                         [("1", "PNG"), ("1", "TIFF"), ("1", "BMP"), ("L", "JPEG"), ("L", "GIF")],
                         ids=["1-png", "1-tiff", "1-bmp", "L-jpeg", "L-gif"])
def test_bilevel_and_grey_become_rgb(tmp_path: Path, mode: str, fmt: str) -> None:
    image = Image.new(mode, (16, 16), 0)
    image.paste(255, (8, 0, 16, 16))
    got = load(save(image, tmp_path / f"grey.{fmt.lower()}", fmt))
    assert got.mode == "RGB"
    assert near(got.getpixel((2, 2)), BLACK, 4) and near(got.getpixel((12, 2)), WHITE, 4)


# --------------------------------------------------------------------------- sizing


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.jpg"
    return save(quadrants((4000, 3000)), path, quality=85)


def test_target_size_drafts_large_jpeg(big_jpeg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):  # type: ignore[no-untyped-def]
        calls.append((mode, size))
        return real_draft(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    image = load(big_jpeg, target_size=384)
    assert calls == [("RGB", (384, 384))]
    assert min(image.size) >= 384 and image.width <= 1000
    assert near(image.getpixel((10, 10)), RED) and near(image.getpixel((image.width - 10, 10)), GREEN)
    assert load(big_jpeg).size == (4000, 3000)


def test_target_size_with_rotation_and_other_formats(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = save(quadrants((2000, 1500)), tmp_path / "rotated.jpg", exif=exif.tobytes())
    image = load(rotated, target_size=384)
    assert image.height > image.width and min(image.size) >= 384 and image.height <= 1000
    png = load(save(quadrants((2000, 1500)), tmp_path / "big.png"), target_size=384)
    assert min(png.size) >= 384 and max(png.size) <= 1000
    tiny = load(save(quadrants(), tmp_path / "tiny.png"), target_size=384)
    assert tiny.size == (60, 30)  # never enlarged
    with pytest.raises(ValueError, match="target_size"):
        load(rotated, target_size=0)


# --------------------------------------------------------------------------- bytes, threads, tally


def test_bytes_api_matches_files(tmp_path: Path) -> None:
    path = save(quadrants(), tmp_path / "item.webp", lossless=True)
    data = path.read_bytes()
    assert probe_bytes(data, name="upload.webp") == probe(path) == ImageInfo("WEBP", 60, 30, 1, "RGB")
    assert np.array_equal(np.asarray(load_bytes(data, name="upload.webp")), np.asarray(load(path)))
    exc = rejection(load_bytes, data[:40], name="upload.webp")
    assert exc.code == "corrupt" and str(exc).startswith("upload.webp: ")


def test_concurrent_loads_are_independent(tmp_path: Path) -> None:
    good = save(quadrants(), tmp_path / "good.png")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(100_000, 100_000))
    jobs = [good, bomb] * 20

    def outcome(path: Path) -> str:
        try:
            return load(path, max_pixels=10_000 if path == good else images.DEFAULT_MAX_PIXELS).mode
        except ImageRejected as exc:
            return exc.code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(outcome, jobs)) == ["RGB", "too_many_pixels"] * 20


def test_tally_script(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    save(quadrants(), tmp_path / "a.png")
    save(quadrants(), tmp_path / "sub" / "b.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "catalogcap.images", str(tmp_path)], capture_output=True,
                          text=True, env=env, check=True, timeout=60)
    assert json.loads(done.stdout) == {"empty": 1, "not_an_image": 1, "ok": 2}


# --------------------------------------------------------------------------- the corpus


def _run(path: Path) -> dict[str, object]:
    """Probe and load one file, recording outcomes (or any stray exception) and time taken."""
    result: dict[str, object] = {}
    for name, func in (("probe", probe), ("load", load)):
        started = time.perf_counter()
        try:
            value = func(path)
            result[name] = value
        except ImageRejected as exc:
            result[name] = exc
        except BaseException as exc:  # exactly what must never happen
            result[name] = f"CRASH {type(exc).__name__}: {exc}"
        result[f"{name}_s"] = time.perf_counter() - started
    return result


@pytest.fixture(scope="module")
def corpus() -> dict[str, dict[str, object]]:
    if not CORPUS.is_dir():
        pytest.skip(f"test corpus not present at {CORPUS}")
    return {path.relative_to(CORPUS).as_posix(): _run(path) for path in images.iter_files(CORPUS)}


def _code(result: object) -> str:
    if isinstance(result, ImageRejected):
        return result.code
    return "ok" if isinstance(result, Image.Image) else "?"


@needs_corpus
@quiet_corpus
def test_corpus_every_file_is_an_rgb_image_or_a_rejection(corpus: dict[str, dict[str, object]]) -> None:
    assert len(corpus) >= 738
    bad = {}
    for name, result in corpus.items():
        for step in ("probe", "load"):
            value = result[step]
            if isinstance(value, ImageRejected):
                ok = value.code in REASONS and name.split("/")[-1] in str(value)
            elif step == "probe":
                ok = isinstance(value, ImageInfo)
            else:
                ok = isinstance(value, Image.Image) and value.mode == "RGB" and min(value.size) > 0
            if not ok:
                bad[f"{step} {name}"] = str(value)
    assert not bad


@needs_corpus
@quiet_corpus
def test_corpus_no_file_stalls(corpus: dict[str, dict[str, object]]) -> None:
    times = {name: float(r["probe_s"]) + float(r["load_s"]) for name, r in corpus.items()}  # type: ignore[arg-type]
    slow = {name: round(t, 2) for name, t in times.items() if t > 1.0}
    print(f"\ncorpus: slowest {max(times.values()):.2f}s, total {sum(times.values()):.1f}s, over 1s: {slow}")
    assert max(times.values()) < 5.0, slow


@needs_corpus
@quiet_corpus
def test_corpus_probe_agrees_with_load(corpus: dict[str, dict[str, object]]) -> None:
    for name, result in corpus.items():
        probed, loaded = result["probe"], result["load"]
        if isinstance(probed, ImageRejected):
            assert _code(loaded) == probed.code, name
        if isinstance(loaded, Image.Image):
            assert isinstance(probed, ImageInfo), name
            assert (probed.width, probed.height) == loaded.size, name


@needs_corpus
@quiet_corpus
def test_corpus_tally(corpus: dict[str, dict[str, object]]) -> None:
    counts: dict[str, int] = {}
    for result in corpus.values():
        code = _code(result["load"])
        counts[code] = counts.get(code, 0) + 1
    print("\ncorpus tally:", json.dumps(dict(sorted(counts.items()))))
    assert set(counts) <= {"ok", *REASONS}
    assert counts["ok"] >= 650 and counts.get("too_many_pixels", 0) >= 3
    assert images.tally(CORPUS) == dict(sorted(counts.items()))


KNOWN = {
    "decompression_bomb.gif": "too_many_pixels",
    "bmp/b/reallybig.bmp": "too_many_pixels",
    "bmp/b/badwidth.bmp": "too_many_pixels",
    "truncated_jpeg.jpg": "corrupt",
    "truncated_image.png": "corrupt",
    "broken.png": "corrupt",
    "png_decompression_dos.png": "corrupt",
    "zero_width.gif": "corrupt",
    "hopper.ico": "unsupported_format",
    "decompression_bomb.ico": "unsupported_format",
    "avif/hopper.heif": "unsupported_format",
    "bmp/g/rgb32bf.bmp": "unsupported_format",
    "LICENSE": "not_an_image",
    "pil_sample_cmyk.jpg": "ok",
    "hopper_orientation_6.jpg": "ok",
    "16bit.MM.deflate.tif": "ok",
    "tiff_strip_cmyk_jpeg.tif": "ok",
    "iss634.gif": "ok",
    "apng/delay.png": "ok",
    "sugarshack_bad_mpo_header.jpg": "ok",
    "invalid-exif.jpg": "ok",
    "hopper_bad_exif.jpg": "ok",
    "transparent.png": "ok",
}


@needs_corpus
@quiet_corpus
@pytest.mark.parametrize(("name", "expected"), sorted(KNOWN.items()))
def test_corpus_known_outcomes(corpus: dict[str, dict[str, object]], name: str, expected: str) -> None:
    assert _code(corpus[name]["load"]) == expected, corpus[name]["load"]


def _pixels(corpus: dict[str, dict[str, object]], name: str) -> np.ndarray:
    image = corpus[name]["load"]
    assert isinstance(image, Image.Image), image
    return np.asarray(image, dtype=float)


@needs_corpus
@quiet_corpus
@pytest.mark.parametrize("orientation", range(2, 9))
def test_corpus_rotated_photos_come_upright(corpus: dict[str, dict[str, object]], orientation: int) -> None:
    upright = _pixels(corpus, "hopper.jpg")
    for suffix in ("jpg", "webp"):
        rotated = _pixels(corpus, f"hopper_orientation_{orientation}.{suffix}")
        assert rotated.shape == upright.shape and np.abs(rotated - upright).mean() < 8, suffix
    tiff, base = _pixels(corpus, f"g4_orientation_{orientation}.tif"), _pixels(corpus, "g4_orientation_1.tif")
    assert tiff.shape == base.shape and np.abs(tiff - base).mean() < 1  # fax scans: a few edge pixels differ


@needs_corpus
@quiet_corpus
def test_corpus_cmyk_matches_its_rgb_twin(corpus: dict[str, dict[str, object]]) -> None:
    assert np.abs(_pixels(corpus, "pil_sample_cmyk.jpg") - _pixels(corpus, "pil_sample_rgb.jpg")).mean() < 10


@needs_corpus
@quiet_corpus
def test_corpus_transparency_and_depth(corpus: dict[str, dict[str, object]]) -> None:
    for name in ("transparent.png", "transparent.gif", "transparent.webp"):
        assert tuple(_pixels(corpus, name)[0, 0]) == WHITE, name
    deep = _pixels(corpus, "16_bit_binary_pgm.tiff")
    assert deep.min() < 10 and deep.max() > 245
