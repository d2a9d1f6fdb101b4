"""The prompt each training example is trained with, rendered the way the captioner renders it.

An adapter must learn to continue the prompt it will be given, so every example (and every
dev and held-out image the round captions) gets the prompt rendered from the CURRENT
template of its kind (its profile's, if a [[profiles]] entry matches its path) and its
product context as it is at round time (read for all examples in one batch of queries).

- A template without fields: the prompt is the template, the target the reviewed text (as
  before: such a prompt is stripped from captions).
- A template with fields: the caption keeps the rendered prefix, so the target is the
  reviewed text after that prefix. If the reviewed text no longer starts with the prefix
  (a reviewer rewrote the opening, or the product data changed since), the example is
  trained unprompted on its whole text rather than on a prefix it contradicts.
- An alt-text prefix longer than alt_text_limit is captioned unprompted, so it is trained
  unprompted too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from catalogcap.products.prompts import ImageRequest, render, resolve_contexts, uses_context
from catalogcap.settings import Settings
from catalogcap.training.dataset import Example


def strip_prefix(text: str, prefix: str) -> str | None:
    """`text` after `prefix` (compared case-insensitively, any whitespace), or None if it does not
    start with it."""
    words = prefix.split()
    if not words:
        return text
    pattern = r"\s*".join(re.escape(w) for w in words)
    match = re.match(rf"\s*{pattern}(?!\w)", text, flags=re.IGNORECASE)
    return text[match.end():].strip() if match else None


@dataclass
class ExamplePrompts:
    """Prompt and target per example; product fields per asset for the images the round captions."""

    settings: Settings
    fields: dict[int, dict[str, str]] = field(default_factory=dict)  # asset id -> context fields
    unprompted: int = 0  # examples trained unprompted because their text lost the rendered prefix
    _done: dict[tuple[int, int], tuple[str, str]] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, engine: Engine | None, settings: Settings, examples: Iterable[Example]) -> ExamplePrompts:
        """Read the product context of every example's asset (only when a template names a field)."""
        fields: dict[int, dict[str, str]] = {}
        if engine is not None and uses_context(settings):
            from catalogcap.store.database import read_session

            with read_session(engine) as session:
                contexts = resolve_contexts(session, {e.asset_id for e in examples})
            fields = {asset_id: dict(c.fields) for asset_id, c in contexts.items() if c.fields}
        return cls(settings, fields)

    def for_example(self, example: Example) -> tuple[str, str]:
        """(prompt, target text) of a training example (worked out once per example)."""
        key = (example.caption_id, example.version)
        found = self._done.get(key)
        if found is None:
            found = self._done[key] = self._work_out(example)
        return found

    def _work_out(self, example: Example) -> tuple[str, str]:
        settings = self.settings.for_profile(self.settings.profile_for(example.path))
        rendered = render(settings.generation.for_kind(example.kind).prompt, self.fields.get(example.asset_id))
        if not rendered.keep:
            return rendered.prompt, example.text
        if example.kind == "alt_text" and len(rendered.prompt) > settings.alt_text_limit:
            return "", example.text
        rest = strip_prefix(example.text, rendered.prompt)
        if rest is None:
            self.unprompted += 1
            return "", example.text
        return rendered.prompt, rest

    def request(self, example: Example) -> ImageRequest:
        """What the captioner needs to render this example's image's prompts."""
        return ImageRequest(example.path, self.fields.get(example.asset_id, {}))

    def contexts_by_path(self, examples: Iterable[Example]) -> dict[Path, dict[str, str]]:
        return {Path(e.path): self.fields.get(e.asset_id, {}) for e in examples if e.path}
