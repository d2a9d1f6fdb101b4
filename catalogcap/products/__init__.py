"""Product data about images: where it comes from (imports, sidecars, the API, plugins) and the
one function every reader uses to know what an image shows, `context_for`."""

from catalogcap.products.context import Context, context_for, match_keys

__all__ = ["Context", "context_for", "match_keys"]
