"""The BLIP captioner: loading, generation into both caption kinds, cleaning rules, speed engine.

`Captioner` and `CaptionSet` are imported on first use, so importing a light part of the
package (e.g. `catalogcap.captioner.text` in the review UI) does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from catalogcap.captioner.generate import Captioner, CaptionSet

__all__ = ["CaptionSet", "Captioner"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from catalogcap.captioner import generate

        return getattr(generate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
