"""Every hook a catalogcap plugin can implement (pluggy, project name and entry-point group `catalogcap`).

Event hooks run in the caller's thread (the daemon's worker, the review UI, the API) and
must return quickly: hand slow work to a thread or an outbox. An implementation may take
any subset of a hook's arguments.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("catalogcap")
hookimpl = pluggy.HookimplMarker("catalogcap")


@hookspec
def register_exporters(register):
    """Call register(name, export_fn, description); export_fn(events, dest, options) returns a report dict."""


@hookspec
def register_settings(register):
    """Call register(section, model) to validate `[plugin_config.<section>]` with a pydantic model."""


@hookspec
def register_commands(cli):
    """Add click commands or groups to the `catalogcap` command line."""


@hookspec
def caption_created(caption, settings):
    """The model wrote a caption (a CaptionEvent), before any review."""


@hookspec
def caption_reviewed(caption, decision, settings):
    """A reviewer decided a caption (a CaptionEvent in its new state); decision: accept/edit/reject/reset."""


@hookspec
def adapter_promoted(adapter, settings):
    """A newly trained adapter (an AdapterEvent) became the active one."""


@hookspec
def adapter_rolled_back(adapter, active, settings):
    """`adapters rollback` took an adapter down; active is the AdapterEvent now in use, or None for the base model."""


@hookspec
def product_context(path, asset):
    """Product data about an image (path: its primary path; asset: an AssetInfo): a dict of field -> text, or None."""
