"""Getting images into the store over HTTP: uploads kept by content, paths kept inside roots.

An upload is spooled to a temporary file while it is hashed, sniffed from its bytes (the
client's file name and content type are never trusted), then renamed to
`home/<upload_folder>/<ab>/<sha256>.<ext>`: the server, not the client, chooses the path.
From there it goes through the same intake as a file in a watched folder. A registered
path must stay inside `api.roots` both as written and once symlinks are resolved.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from catalogcap import images
from catalogcap.api.problems import ApiProblem, problem_response
from catalogcap.intake import matches
from catalogcap.settings import Settings

EXTENSIONS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif", "GIF": ".gif",
              "BMP": ".bmp", "AVIF": ".avif"}
# How each rejection reads over HTTP: 415 when the bytes are not an accepted image type,
# 413 when over a budget, 422 when it claims to be an image but cannot be read.
REJECTION_STATUS = {"empty": 422, "not_an_image": 415, "unsupported_format": 415, "too_large": 413,
                    "too_many_pixels": 413, "corrupt": 422, "unreadable": 422}
CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_pixels: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """The API's budgets, never looser than the store-wide ones."""
        return cls(max_bytes=int(min(settings.api.max_upload_mb, settings.max_file_mb) * 2**20),
                   max_pixels=min(settings.api.max_upload_pixels, settings.max_pixels))


def upload_root(settings: Settings) -> Path:
    return settings.home / settings.api.upload_folder


def too_large(max_bytes: int) -> ApiProblem:
    return ApiProblem(413, "Upload too large", f"the limit is {max_bytes:,} bytes (api.max_upload_mb)",
                      code="too_large")


def spool(source: BinaryIO, root: Path, max_bytes: int) -> tuple[Path, str]:
    """Copy an upload into a private temporary file under `root`, hashing it; (path, sha256)."""
    incoming = root / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=incoming, prefix="upload-")
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise too_large(max_bytes)
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name), digest.hexdigest()


def sniff(path: Path, limits: Limits) -> tuple[tuple[int, int], images.ImageInfo]:
    """What the bytes are, with the (size, mtime) of the file before it was read, so intake can
    reuse this probe instead of reading the header again; a problem (413/415/422) when they are
    not an acceptable image."""
    try:
        before = os.stat(path)
        info = images.probe(path, max_pixels=limits.max_pixels, max_bytes=limits.max_bytes)
    except images.ImageRejected as exc:
        raise ApiProblem(REJECTION_STATUS.get(exc.code, 422), f"Image refused: {exc.reason}", exc.detail,
                         code=exc.code) from None
    except FileNotFoundError:
        raise ApiProblem(404, "No such file", f"{path} disappeared while it was read", code="path_not_found") from None
    return (before.st_size, before.st_mtime_ns), info


def place(tmp: Path, root: Path, fingerprint: str, fmt: str) -> Path:
    """Move a sniffed upload to its content-addressed name (atomic; same bytes, same name)."""
    final = root / fingerprint[:2] / f"{fingerprint}{EXTENSIONS.get(fmt, '.img')}"
    final.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(tmp, 0o644)
    os.replace(tmp, final)
    return final


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def resolve_registered(raw: str, settings: Settings) -> Path:
    """The real path of a file a client asks to register, or a problem saying why not.

    Checked before the file system is asked anything, so paths outside the roots cannot be
    probed for existence; then again after resolving symlinks."""
    roots = settings.api.roots
    if not roots:
        raise ApiProblem(403, "Registration by path is off",
                         "the server has no api.roots configured; upload the image instead", code="paths_disabled")
    given = Path(raw)
    if not given.is_absolute():
        raise ApiProblem(422, "Path must be absolute", "give the full path of a file under an allowed root",
                         code="path_not_absolute")
    if ".." in given.parts or not _inside(given, [*roots, *(r.resolve() for r in roots)]):
        raise ApiProblem(403, "Path outside the allowed roots", "only files under api.roots can be registered",
                         code="path_outside_roots")
    try:
        real = given.resolve(strict=False)
    except (OSError, RuntimeError):  # a symlink loop
        raise ApiProblem(422, "Path cannot be resolved", "a symbolic link in the path loops",
                         code="path_unresolvable") from None
    if not _inside(real, [r.resolve() for r in roots]):
        raise ApiProblem(403, "Path outside the allowed roots",
                         "the path leads out of api.roots through a symbolic link", code="path_outside_roots")
    try:
        info = real.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise ApiProblem(404, "No such file", f"{given} does not exist", code="path_not_found") from None
    except OSError as exc:
        raise ApiProblem(422, "Cannot read the path", f"{given}: {exc.strerror or exc}",
                         code="path_unreadable") from None
    if not stat.S_ISREG(info.st_mode):
        raise ApiProblem(422, "Not a file", f"{given} is not a regular file", code="path_not_a_file")
    if not matches(real.name, settings.watch.include, settings.watch.ignore):
        raise ApiProblem(422, "Not an image file name",
                         f"{real.name} does not match watch.include or matches watch.ignore",
                         code="path_not_included")
    return real


class BodyLimit:
    """ASGI middleware: a body over its budget gets 413 as a problem, before or while it is read.

    Uploads (POST /v1/images) get the upload budget plus multipart overhead; every other
    request a small one. A declared Content-Length over budget is refused unread."""

    def __init__(self, app: ASGIApp, *, upload_bytes: int, other_bytes: int) -> None:
        self.app = app
        self.upload_bytes = upload_bytes
        self.other_bytes = other_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_upload = scope["method"] == "POST" and scope["path"] == "/v1/images"
        limit = self.upload_bytes if is_upload else self.other_bytes
        detail = f"the limit for this request is {limit:,} bytes" + (" (api.max_upload_mb)" if is_upload else "")
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await problem_response(413, "Content Too Large", detail, "content_too_large")(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # FastAPI passes an HTTPException from the body reader to the handlers
                    raise HTTPException(413, detail)
            return message

        await self.app(scope, limited, send)
