"""Built-in exporters, registered through the same hook as third-party ones."""

from __future__ import annotations

from catalogcap.plugins.hookspecs import hookimpl


@hookimpl
def register_exporters(register):
    from catalogcap.plugins.exporters import export_csv, export_jsonl

    register("jsonl", export_jsonl, "One JSON object per caption (all fields, both texts).")
    register("csv", export_csv, "A CSV with path, fingerprint, kind, state, text and model text.")
