"""Every hook a catalogcap plugin can implement (pluggy, project name and entry-point group `catalogcap`)."""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("catalogcap")
hookimpl = pluggy.HookimplMarker("catalogcap")


@hookspec
def register_exporters(register):
    """Call register(name, export_fn, description) for each exporter; export_fn(events, dest, options) -> dict."""


@hookspec
def register_commands(cli):
    """Add click commands or groups to the `catalogcap` command line."""


@hookspec
def caption_created(caption):
    """The model wrote a caption (a CaptionEvent), before any review."""


@hookspec
def caption_reviewed(caption, decision):
    """A reviewer accepted, edited or rejected a caption (a CaptionEvent; decision is the action)."""


@hookspec
def adapter_promoted(adapter):
    """A newly trained adapter (an AdapterEvent) became the active one."""
