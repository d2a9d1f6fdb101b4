"""The picture of the caption under the cursor, drawn in the terminal.

Images are read through `catalogcap.images` (the same safe intake the captioner uses),
decoded at a reduced scale, and kept in a small cache so going back is instant. Loading
happens in a worker thread; the widget only ever receives a finished thumbnail.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Container
from textual.widgets import Static
from textual_image.renderable import Image as BestRenderable
from textual_image.renderable import SixelImage, TGPImage
from textual_image.widget import HalfcellImage
from textual_image.widget import Image as BestImage

from catalogcap import images

# A graphics protocol (sixel, kitty) shows the real picture; every other terminal, and a
# headless test, gets coloured half blocks rather than textual-image's unicode fallback.
ImageWidget: Any = BestImage if BestRenderable in (SixelImage, TGPImage) else HalfcellImage

PREVIEW_PIXELS = 320
CACHE_SIZE = 64


class ImagePreview(Container):
    """The picture, or a sentence saying why there is none."""

    def compose(self) -> ComposeResult:
        yield ImageWidget(id="picture")
        yield Static("", id="picture-note")

    def show(self, picture: PILImage.Image | str) -> None:
        widget = self.query_one("#picture")
        note = isinstance(picture, str)
        self.set_class(note, "-note")
        widget.image, widget.display = (None, False) if note else (picture, True)
        self.query_one("#picture-note", Static).update(Text(picture, style="italic dim") if note else "")


class PreviewLoader:
    """Thumbnails by path, loaded safely and cached; called from a worker thread only."""

    def __init__(self, *, max_pixels: int, max_bytes: int) -> None:
        self.limits = {"max_pixels": max_pixels, "max_bytes": max_bytes}
        self._cache: OrderedDict[str, PILImage.Image | str] = OrderedDict()

    def peek(self, paths: tuple[str, ...]) -> PILImage.Image | str | None:
        """What `load` would return, when that needs no decoding (cached, or no file); else None."""
        path = self._existing(paths)
        if path is None:
            return f"image not found: {paths[0] if paths else 'no path recorded'}"
        return self._cache.get(path)

    def load(self, paths: tuple[str, ...]) -> PILImage.Image | str:
        """The first existing path's thumbnail, or why there is none."""
        path = self._existing(paths)
        if path is None:
            return f"image not found: {paths[0] if paths else 'no path recorded'}"
        if path not in self._cache:
            self._cache[path] = self._read(path)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return self._cache[path]

    @staticmethod
    def _existing(paths: tuple[str, ...]) -> str | None:
        return next((p for p in paths if Path(p).is_file()), None)

    def _read(self, path: str) -> PILImage.Image | str:
        try:
            picture = images.load(path, target_size=PREVIEW_PIXELS, **self.limits)
        except images.ImageRejected as exc:
            return f"no preview: {exc}"
        picture.thumbnail((PREVIEW_PIXELS, PREVIEW_PIXELS))
        return picture
