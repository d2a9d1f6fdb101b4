"""The BLIP captioner: loading, generation into both caption kinds, cleaning rules."""

from catalogcap.captioner.generate import Captioner, CaptionSet

__all__ = ["CaptionSet", "Captioner"]
