"""Opening any file a product-photo folder receives, safely.

`probe` reads only a file's header: its format, upright size and frame count. `load`
decodes the first frame into an upright 8-bit sRGB ``RGB`` image, with transparency laid
on white, ready for the captioner. Both accept only an allowlist of formats, check the
byte and pixel budgets before any pixel is decoded, and turn every failure — truncated
data, fuzzer crash cases, decompression bombs, unreadable paths — into `ImageRejected`
with a reason a person can read. No global Pillow setting is read as a limit or changed:
`ImageFile.LOAD_TRUNCATED_IMAGES` stays False, so a cut-off file is rejected, never
padded with grey. (Pillow's own bomb guard, ``2 * Image.MAX_IMAGE_PIXELS``, still
applies on top of ``max_pixels`` and is reported as ``too_many_pixels`` too.)

Run ``python -m catalogcap.images FOLDER`` to print, as JSON, how many files under
FOLDER load and how many are rejected for each reason.
"""

from __future__ import annotations

import errno
import io
import json
import os
import stat
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, UnidentifiedImageError, features

from catalogcap.errors import CatalogcapError

try:
    from PIL import ImageCms
except ImportError:  # Pillow built without LittleCMS: colour profiles are then ignored
    ImageCms = None  # type: ignore[assignment]

REASONS: dict[str, str] = {
    "empty": "empty file",
    "not_an_image": "not an image",
    "unsupported_format": "unsupported image format",
    "too_large": "file too large",
    "too_many_pixels": "too many pixels",
    "corrupt": "corrupt or truncated image",
    "unreadable": "cannot read file",
}

# ImageInfo.frames counts at most this many pages, for at most this long (a TIFF may have 100,000).
FRAME_CAP = 1000
FRAME_SECONDS = 0.5
DEFAULT_MAX_PIXELS = 180_000_000
DEFAULT_MAX_BYTES = 200 * 2**20


def _avif_available() -> bool:
    try:
        return bool(features.check_module("avif"))
    except Exception:  # an older Pillow that does not know the feature
        return False


SUPPORTED_FORMATS: frozenset[str] = frozenset(
    {"JPEG", "MPO", "PNG", "WEBP", "TIFF", "GIF", "BMP"} | ({"AVIF"} if _avif_available() else set())
)

# Image formats Pillow cannot open at all, recognised so they are named rather than called "not an image".
_FOREIGN_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"%PDF-", "PDF"),
    (0, b"\xff\x0a", "JPEG XL"),
    (0, b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (4, b"ftypheic", "HEIF"), (4, b"ftypheix", "HEIF"), (4, b"ftypmif1", "HEIF"), (4, b"ftypmsf1", "HEIF"),
    (4, b"ftyphevc", "HEIF"), (4, b"ftypavif", "AVIF"), (4, b"ftypavis", "AVIF"),
)
_HIGH_BIT_MODES = frozenset({"I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})
_T = Image.Transpose
_TRANSPOSE = {2: _T.FLIP_LEFT_RIGHT, 3: _T.ROTATE_180, 4: _T.FLIP_TOP_BOTTOM, 5: _T.TRANSPOSE,  # EXIF 0x0112
              6: _T.ROTATE_270, 7: _T.TRANSVERSE, 8: _T.ROTATE_90}


class ImageRejected(CatalogcapError):
    """A file that is not accepted as a product image; `code` is a key of `REASONS`.

    ``str(exc)`` reads ``"<path>: <reason>: <detail>"``, e.g.
    ``"shoe.jpg: corrupt or truncated image: OSError: image file is truncated"``.
    """

    def __init__(self, path: str | os.PathLike[str], code: str, detail: str) -> None:
        if code not in REASONS:
            raise ValueError(f"unknown rejection code {code!r}")
        super().__init__(path, code, detail)  # keeps the exception picklable
        self.path = Path(path)
        self.code = code
        self.detail = detail

    @property
    def reason(self) -> str:
        """The short human label of `code`."""
        return REASONS[self.code]

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}: {self.detail}"


@dataclass(frozen=True)
class ImageInfo:
    """What a header says: format name, upright size (after EXIF orientation), frame count (at most
    `FRAME_CAP`), mode."""

    format: str
    width: int
    height: int
    frames: int
    mode: str


def probe(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS,
          max_bytes: int = DEFAULT_MAX_BYTES) -> ImageInfo:
    """Identify the image at `path` from its header, without decoding pixels.

    Raises `ImageRejected` for anything that is not an acceptable image. A file that
    passes may still be rejected by `load` when its pixel data turns out to be corrupt.
    """
    path = Path(path)
    with _guard(path), _open_file(path, max_bytes) as fp:
        return _probe(fp, path, max_pixels)


def probe_bytes(data: bytes, *, name: str, max_pixels: int = DEFAULT_MAX_PIXELS,
                max_bytes: int = DEFAULT_MAX_BYTES) -> ImageInfo:
    """`probe` for an image held in memory (an upload); `name` labels it in errors."""
    with _guard(Path(name)):
        _check_bytes(Path(name), len(data), max_bytes)
        return _probe(io.BytesIO(data), Path(name), max_pixels)


def load(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS,
         max_bytes: int = DEFAULT_MAX_BYTES, target_size: int | None = None) -> Image.Image:
    """Decode the first frame of the image at `path` as an upright sRGB ``RGB`` image.

    With `target_size`, large pictures are decoded and returned at a reduced scale whose
    short side is still at least `target_size` (JPEGs via libjpeg's DCT scaling, so a
    huge photo never decodes at full size). Raises `ImageRejected`; nothing else.
    """
    _check_target(target_size)
    path = Path(path)
    with _guard(path), _open_file(path, max_bytes) as fp:
        return _load(fp, path, max_pixels, target_size)


def load_bytes(data: bytes, *, name: str, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_bytes: int = DEFAULT_MAX_BYTES, target_size: int | None = None) -> Image.Image:
    """`load` for an image held in memory (an upload); `name` labels it in errors."""
    _check_target(target_size)
    with _guard(Path(name)):
        _check_bytes(Path(name), len(data), max_bytes)
        return _load(io.BytesIO(data), Path(name), max_pixels, target_size)


def incomplete(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_bytes: int = DEFAULT_MAX_BYTES) -> str | None:
    """Why the file at `path` looks cut off (a writer may still be at work), or None.

    Cheap for the common formats: the end marker (JPEG EOI, PNG IEND, GIF trailer) or the
    length in the header (WebP, BMP) is checked against the file; other formats are decoded at
    a reduced size. Anything else wrong with the file is left for `probe` and `load` to report.
    """
    path = Path(path)
    try:
        with _guard(path), _open_file(path, max_bytes) as fp:
            head = fp.read(32)
            size = fp.seek(0, os.SEEK_END)
            fp.seek(max(size - 64, 0))
            tail = fp.read()
    except ImageRejected as exc:
        return "empty file" if exc.code == "empty" else None
    end = tail.rstrip(b"\0")
    if head.startswith(b"\xff\xd8\xff"):
        return None if end.endswith(b"\xff\xd9") else "JPEG without its end marker"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return None if b"IEND" in tail else "PNG without its IEND chunk"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return None if end.endswith(b";") else "GIF without its trailer"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        expected = int.from_bytes(head[4:8], "little") + 8
        return None if size >= expected else f"WebP of {size:,} bytes, its header says {expected:,}"
    if head.startswith(b"BM") and len(head) >= 6:
        expected = int.from_bytes(head[2:6], "little")
        return None if size >= expected else f"BMP of {size:,} bytes, its header says {expected:,}"
    try:
        load(path, max_pixels=max_pixels, max_bytes=max_bytes, target_size=64)
    except ImageRejected as exc:
        return f"cannot be decoded yet ({exc.detail})" if exc.code == "corrupt" else None
    return None


# --------------------------------------------------------------------------- opening


@contextmanager
def _guard(path: Path) -> Iterator[None]:
    """Turn any exception escaping the block into `ImageRejected` for `path`."""
    try:
        yield
    except ImageRejected:
        raise
    except Exception as exc:
        raise _classify_exception(path, exc) from exc


def _classify_exception(path: Path, exc: Exception) -> ImageRejected:
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return ImageRejected(path, "too_many_pixels", detail)
    if isinstance(exc, OSError) and exc.errno is not None:  # the OS speaking, not a decoder
        return ImageRejected(path, "unreadable", f"{type(exc).__name__}: {exc.strerror or exc}")
    return ImageRejected(path, "corrupt", detail)


def _check_target(target_size: int | None) -> None:
    if target_size is not None and target_size < 1:
        raise ValueError(f"target_size must be a positive number of pixels, not {target_size!r}")


def _check_bytes(path: Path, size: int, max_bytes: int) -> None:
    if size == 0:
        raise ImageRejected(path, "empty", "the file has no content (0 bytes)")
    if size > max_bytes:
        raise ImageRejected(path, "too_large", f"{size:,} bytes, more than the limit of {max_bytes:,}")


class NotRegularFile(OSError):
    """A FIFO, socket, device or folder where an image file was expected."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(errno.EINVAL, "not a regular file", str(path))


def open_regular(path: str | os.PathLike[str]) -> int:
    """A read-only descriptor of `path`, which must be a regular file: opened without blocking
    (a FIFO would wait for a writer forever), checked on the descriptor itself (no race with a
    swap after a stat), then made blocking again. Raises `NotRegularFile` or another OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def _open_file(path: Path, max_bytes: int) -> Iterator[IO[bytes]]:
    """Open a regular file for reading once its size passes; FIFOs and devices are refused."""
    try:
        fd = open_regular(path)
    except NotRegularFile:
        raise ImageRejected(path, "unreadable", "not a regular file") from None
    with os.fdopen(fd, "rb") as fp:
        _check_bytes(path, os.fstat(fd).st_size, max_bytes)
        yield fp


def _open_formats() -> list[str]:
    """The allowlist in the names `Image.open` knows (MPO is opened by the JPEG plugin)."""
    Image.init()
    return sorted(fmt for fmt in SUPPORTED_FORMATS if fmt in Image.OPEN)


def _open(fp: IO[bytes], path: Path, max_pixels: int) -> Image.Image:
    """`Image.open` restricted to the allowlist, then the pixel budget, checked on the header size."""
    head = fp.read(64)
    fp.seek(0)
    try:
        image = Image.open(fp, formats=_open_formats())
    except UnidentifiedImageError as exc:
        raise _unidentified(path, head, exc) from exc
    except OSError as exc:  # e.g. "Unsupported BMP bitfields layout": a variant Pillow cannot decode
        if exc.errno is None and str(exc).lower().startswith("unsupported"):
            raise ImageRejected(path, "unsupported_format", f"{type(exc).__name__}: {exc}") from exc
        raise
    width, height = image.size
    problem = None
    if width <= 0 or height <= 0:
        problem = ImageRejected(path, "corrupt", f"{image.format} header says {width}x{height}")
    elif width * height > max_pixels:
        problem = ImageRejected(path, "too_many_pixels", f"{width}x{height} is {width * height:,} pixels, "
                                f"more than the limit of {max_pixels:,}")
    if problem is not None:
        image.close()
        raise problem
    return image


def _unidentified(path: Path, head: bytes, exc: Exception) -> ImageRejected:
    """Say why the allowlisted plugins refused a file: broken, another format, or no image at all."""
    Image.init()
    known = []
    for fmt, (_factory, accept) in list(Image.OPEN.items()):
        try:
            if accept is not None and accept(head[:16]):
                known.append(fmt)
        except Exception:  # an accept() tripping over a short prefix
            continue
    known += [name for offset, magic, name in _FOREIGN_MAGIC if head[offset:offset + len(magic)] == magic]
    by_name = Image.EXTENSION.get(path.suffix.lower(), "")
    if by_name in known:  # the name agrees with one of the signatures: say that one
        known.insert(0, known.pop(known.index(by_name)))
    elif by_name in Image.OPEN and Image.OPEN[by_name][1] is None:  # TGA & co. have no signature
        known.insert(0, f"{by_name} (judging by the file name)")
    supported = [fmt for fmt in known if fmt in SUPPORTED_FORMATS]
    if supported:
        return ImageRejected(path, "corrupt", f"starts like a {supported[0]} file but cannot be read")
    if known:
        accepted = ", ".join(sorted(SUPPORTED_FORMATS - {"MPO"}))
        return ImageRejected(path, "unsupported_format", f"{known[0]} is not accepted (only {accepted})")
    return ImageRejected(path, "not_an_image", "the content is not in any image format known here")


def _frame_count(image: Image.Image) -> int:
    """Frames in the file, counted up to `FRAME_CAP` pages or `FRAME_SECONDS` (only the first
    frame is used; Pillow's `n_frames` walks every page of a TIFF, in time quadratic in pages)."""
    try:
        known = getattr(image, "_n_frames", None)
        if isinstance(known, int):
            return max(1, known)
        if not getattr(image, "is_animated", False):
            return 1
    except Exception:  # a broken later frame does not matter: only the first is used
        return 1
    count, deadline = 1, time.monotonic() + FRAME_SECONDS
    with suppress(Exception):  # EOFError past the last frame, or a broken one: what was counted stands
        while count < FRAME_CAP and time.monotonic() < deadline:
            image.seek(count)
            count += 1
    with suppress(Exception):
        image.seek(0)
    return count


def _orientation(image: Image.Image, *, header_only: bool = False) -> int:
    """The EXIF (or XMP) orientation 1..8; 1 when absent or unreadable (broken EXIF is not fatal)."""
    try:
        # Image.getexif itself never decodes; PNG's override loads the pixels to find a late eXIf chunk.
        exif = Image.Image.getexif(image) if header_only else image.getexif()
        value = int(exif.get(0x0112, 1))
    except Exception:
        return 1
    return value if value in _TRANSPOSE else 1


def _stored_size(image: Image.Image) -> tuple[int, int]:
    """Width and height as stored, before orientation (newer Pillows report TIFFs already upright)."""
    tags = getattr(image, "tag_v2", None)
    try:
        return (int(tags[256]), int(tags[257])) if tags is not None else image.size
    except Exception:
        return image.size


def _probe(fp: IO[bytes], path: Path, max_pixels: int) -> ImageInfo:
    with _open(fp, path, max_pixels) as image:
        width, height = _stored_size(image)
        if _orientation(image, header_only=True) >= 5:
            width, height = height, width
        return ImageInfo(format=str(image.format), width=width, height=height,
                         frames=_frame_count(image), mode=image.mode)


# --------------------------------------------------------------------------- decoding


# A decode of more pixels than this (after JPEG draft scaling) waits for one of LARGE_DECODES
# slots, so a burst of huge pictures (a 97 KB PNG can hold 100 MP) costs at most that many
# full-size buffers at once, however many threads decode.
LARGE_DECODE_PIXELS = 16_000_000
LARGE_DECODES = 2
_large_decodes = threading.BoundedSemaphore(LARGE_DECODES)


@contextmanager
def _decode_slot(image: Image.Image) -> Iterator[None]:
    width, height = image.size
    if width * height <= LARGE_DECODE_PIXELS:
        yield
        return
    with _large_decodes:
        yield


def _decode(image: Image.Image) -> None:
    """Decode the pixels (the step whose memory `_decode_slot` bounds)."""
    image.load()


def _reduce_early(image: Image.Image, target_size: int | None) -> Image.Image:
    """Shrink a plain grey or RGB picture right after decoding, before any converted copy of
    the full-size buffer is made (the result equals converting first, then reducing)."""
    if not target_size or image.mode not in ("L", "RGB") or "icc_profile" in image.info \
            or "transparency" in image.info:
        return image
    factor = min(image.size) // target_size
    return image.reduce(factor) if factor >= 2 else image


def _load(fp: IO[bytes], path: Path, max_pixels: int, target_size: int | None) -> Image.Image:
    with _open(fp, path, max_pixels) as image:
        if target_size and image.format in ("JPEG", "MPO"):
            image.draft("RGB", (target_size, target_size))
        with _decode_slot(image):
            _decode(image)
            orientation = _orientation(image)
            rgb = _to_rgb(_reduce_early(image, target_size))
    if target_size:
        factor = min(rgb.size) // target_size
        if factor >= 2:
            rgb = rgb.reduce(factor)
    if orientation in _TRANSPOSE:
        rgb = rgb.transpose(_TRANSPOSE[orientation])
    return rgb


def _to_rgb(image: Image.Image) -> Image.Image:
    """A new 8-bit sRGB ``RGB`` image: deep modes scaled, profile applied, transparency on white."""
    icc = image.info.get("icc_profile")
    if image.mode in _HIGH_BIT_MODES:
        image = _high_bit_to_8bit(image)
    elif image.mode in _ALPHA_MODES or "transparency" in image.info:
        image = image.convert("RGBA")
    elif image.mode not in ("RGB", "CMYK"):
        image = image.convert("RGB")
    if icc and image.mode in ("RGB", "RGBA", "CMYK"):
        image = _to_srgb(image, icc)
    if image.mode in ("RGBA", "LA"):
        white = Image.new("RGB", image.size, "white")
        white.paste(image.convert("RGB"), mask=image.getchannel("A"))
        return white
    return image.convert("RGB")


def _high_bit_to_8bit(image: Image.Image) -> Image.Image:
    """16/32-bit integer and float grey as 8-bit ``L`` (``LA`` when a transparent value is set)."""
    values = np.asarray(image).astype(np.float32)
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if image.mode.startswith("I;16"):  # the full range of the bit depth, so a dark picture stays dark
        scaled = values * (255.0 / (2 ** _bits_per_sample(image, 16) - 1))
    elif image.mode == "F" and low >= 0.0 and high <= 1.0:
        scaled = values * 255.0
    elif low >= 0.0 and high <= 255.0:
        scaled = values
    elif low >= 0.0 and high <= 65535.0:
        scaled = values / 257.0
    else:  # signed or wider than 16 bits: stretch what is there
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    grey = np.clip(np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0), 0, 255).round().astype(np.uint8)
    out = Image.fromarray(grey, "L")
    transparent = image.info.get("transparency")
    if isinstance(transparent, int):
        alpha = Image.fromarray(np.where(np.asarray(image) == transparent, 0, 255).astype(np.uint8), "L")
        out = Image.merge("LA", (out, alpha))
    return out


def _bits_per_sample(image: Image.Image, default: int) -> int:
    """A TIFF's BitsPerSample (12-bit scans come in 16-bit containers), else `default`."""
    try:
        bits = int(getattr(image, "tag_v2", {}).get(258, (default,))[0])
    except Exception:
        return default
    return bits if 1 <= bits <= default else default


@lru_cache(maxsize=1)
def _srgb_profile() -> Any:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    """Convert through the embedded profile into sRGB; on any failure keep the pixels as they are."""
    if ImageCms is None:
        return image
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        space = profile.profile.xcolor_space.strip()
        if space != ("CMYK" if image.mode == "CMYK" else "RGB"):
            return image
        if ImageCms.getProfileDescription(profile).strip().startswith("sRGB"):
            return image
        out_mode = "RGBA" if image.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(image, profile, _srgb_profile(), outputMode=out_mode)
        return converted if converted is not None else image
    except Exception:  # a broken or exotic profile is not a reason to reject the picture
        return image


# --------------------------------------------------------------------------- tally


def outcome(path: Path, **limits: Any) -> str:
    """``"ok"`` when `load` succeeds, else the rejection code."""
    try:
        load(path, **limits)
    except ImageRejected as exc:
        return exc.code
    return "ok"


def iter_files(root: Path) -> list[Path]:
    """Every regular file under `root` (or `root` itself), sorted."""
    return [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())


def tally(root: Path, **limits: Any) -> dict[str, int]:
    """How many files under `root` load (``"ok"``) and how many are rejected for each code."""
    counts = Counter(outcome(path, **limits) for path in iter_files(root))
    return dict(sorted(counts.items()))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m catalogcap.images FOLDER")
    print(json.dumps(tally(Path(sys.argv[1])), indent=2))
