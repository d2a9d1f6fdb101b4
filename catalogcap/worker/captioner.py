"""What the worker needs of a captioner: a typed protocol (the real one is `catalogcap.captioner.Captioner`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


class CaptionTexts(Protocol):
    texts: Mapping[str, str]  # by kind


class BatchCaptioner(Protocol):
    model_id: str
    adapter_id: str | None

    @property
    def image_size(self) -> int | None: ...

    def caption_images(self, pictures: Sequence[Any]) -> Sequence[CaptionTexts]: ...

    def generation_record(self, kind: str) -> dict[str, Any]: ...


@runtime_checkable
class PixelReader(Protocol):
    """A captioner that decodes a file straight to model input (off the model's thread)."""

    def load_pixels(self, path: Path) -> Any: ...
