"""Consistency checks of a caption against its product context and the text rules.

`caption_warnings` returns a list of warnings, each {"code": ..., "message": ...} (plus details
such as "field", "said", "expected"), stored on the caption and shown to reviewers."""

from __future__ import annotations

from typing import Any

from catalogcap.store.captions import length_problem


def caption_warnings(kind: str, text: str, context: dict[str, Any] | None, *, alt_text_limit: int) -> list[dict[str, Any]]:
    """The problems a reviewer should see in `text`, a caption of `kind` made with `context`
    (the provenance dict saved with the caption)."""
    warnings: list[dict[str, Any]] = []
    problem = length_problem(kind, text, alt_text_limit)
    if problem:
        warnings.append({"code": "too_long", "message": problem})
    return warnings
