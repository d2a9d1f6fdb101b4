"""Fingerprints: sha256 of a file's bytes (streamed), and `content_id`, the picture's identity
without its metadata.

Only regular files are read: a FIFO would block the reader forever and a device
(`/dev/zero` behind a symlink) never ends, so both are refused before the first read,
and no more than the size the file had when it was opened is ever read.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from catalogcap import images
from catalogcap.images import NotRegularFile, open_regular

CHUNK = 1 << 20
__all__ = ["NotRegularFile", "content_id", "fingerprint_bytes", "fingerprint_file", "open_regular"]


def fingerprint_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint_file(path: Path | str) -> str:
    """sha256 of a regular file, read up to the size it had when opened; `NotRegularFile` otherwise."""
    digest = hashlib.sha256()
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as handle:
        left = os.fstat(fd).st_size
        while left > 0 and (chunk := handle.read(min(CHUNK, left))):
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


# -- content identity: the image without its metadata -----------------------------------------
#
# Photo tools rewrite metadata all the time (exiftool, a DAM, our own XMP embed); the picture
# stays the same and so must its asset. `content_id` hashes what makes the picture: JPEG
# segments other than metadata (APP0/1/3-13/15, COM) and everything from the first scan on;
# PNG chunks other than text, EXIF and time; WebP image chunks (VP8, VP8L, ALPH, ANIM, ANMF,
# ICCP); other formats by their decoded first frame. Colour profiles (JPEG APP2, PNG iCCP,
# WebP ICCP) and Adobe's APP14 colour transform are kept: they change how it looks.

JPEG_METADATA = frozenset({0xE0, 0xE1, *range(0xE3, 0xEE), 0xEF, 0xFE})
PNG_METADATA = frozenset({b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"})
WEBP_IMAGE = frozenset({b"VP8 ", b"VP8L", b"ALPH", b"ANIM", b"ANMF", b"ICCP"})


class _Unparsed(ValueError):
    """The structure is not what its signature promised: no content identity from it."""


def _exact(handle, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise _Unparsed("truncated")
    return data


def _rest(handle, digest, left: int) -> None:
    while left > 0 and (chunk := handle.read(min(CHUNK, left))):
        digest.update(chunk)
        left -= len(chunk)


def _jpeg(handle, digest, size: int) -> None:
    digest.update(_exact(handle, 2))
    while True:
        if _exact(handle, 1) != b"\xff":
            raise _Unparsed("JPEG marker expected")
        marker = _exact(handle, 1)[0]
        while marker == 0xFF:  # fill bytes
            marker = _exact(handle, 1)[0]
        if marker == 0xD9:  # EOI before any scan
            digest.update(b"\xff\xd9")
            return
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers
            digest.update(bytes([0xFF, marker]))
            continue
        if marker == 0xDA:  # start of scan: the compressed picture, then the rest of the file
            digest.update(b"\xff\xda")
            _rest(handle, digest, size - handle.tell())
            return
        length = _exact(handle, 2)
        body = _exact(handle, int.from_bytes(length, "big") - 2)
        if marker not in JPEG_METADATA:
            digest.update(bytes([0xFF, marker]) + length + body)


def _png(handle, digest, size: int) -> None:
    digest.update(_exact(handle, 8))
    while handle.tell() < size:
        header = _exact(handle, 8)
        length, kind = int.from_bytes(header[:4], "big"), header[4:]
        if kind in PNG_METADATA:
            handle.seek(length + 4, os.SEEK_CUR)
            continue
        digest.update(header)
        _rest(handle, digest, length + 4)
        if kind == b"IEND":
            return
    raise _Unparsed("PNG without IEND")


def _webp(handle, digest, size: int) -> None:
    digest.update(_exact(handle, 12)[8:])  # not the RIFF size: it grows with metadata
    while handle.tell() + 8 <= size:
        header = _exact(handle, 8)
        length = int.from_bytes(header[4:], "little") + (int.from_bytes(header[4:], "little") & 1)
        if header[:4] in WEBP_IMAGE:
            digest.update(header[:4])
            _rest(handle, digest, length)
        else:
            handle.seek(length, os.SEEK_CUR)


def _pixels(path: Path | str, digest, max_pixels: int) -> None:
    picture = images.load(path, max_pixels=max_pixels)
    width, height = picture.size
    digest.update(f"{picture.mode}:{width}x{height}:".encode())
    for top in range(0, height, 256):  # strip by strip: no second full-size copy
        digest.update(picture.crop((0, top, width, min(height, top + 256))).tobytes())


def content_id(path: Path | str, *, max_pixels: int = images.DEFAULT_MAX_PIXELS) -> str | None:
    """sha256 of the picture in the file at `path`, blind to its metadata; None when the file
    cannot be read as an image (then only its byte fingerprint identifies it)."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(fd).st_size
        head = handle.read(16)
        handle.seek(0)
        try:
            if head.startswith(b"\xff\xd8\xff"):
                digest = hashlib.sha256(b"jpeg\0")
                _jpeg(handle, digest, size)
                return digest.hexdigest()
            if head.startswith(b"\x89PNG\r\n\x1a\n"):
                digest = hashlib.sha256(b"png\0")
                _png(handle, digest, size)
                return digest.hexdigest()
            if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
                digest = hashlib.sha256(b"webp\0")
                _webp(handle, digest, size)
                return digest.hexdigest()
        except (_Unparsed, OSError):
            return None
    digest = hashlib.sha256(b"pixels\0")
    try:
        _pixels(path, digest, max_pixels)
    except images.ImageRejected:
        return None
    return digest.hexdigest()
