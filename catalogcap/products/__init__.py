"""Product data about images: where it comes from (imports, sidecars, the API, plugins) and the
one function every reader uses to know what an image shows, `context_for`.

The names below load on first use, so that `catalogcap.products.prompts` (which settings.py
and the captioner import for templates) does not pull in the store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from catalogcap.products.context import Context, context_for, match_keys

__all__ = ["Context", "context_for", "match_keys"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from catalogcap.products import context

        return getattr(context, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
