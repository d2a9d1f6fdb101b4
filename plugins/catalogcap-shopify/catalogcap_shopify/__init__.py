"""catalogcap-shopify: reviewed alt text into the `Image Alt Text` column of a Shopify product CSV.

    catalogcap export shopify -o input=products_export.csv --out products_alt.csv
    catalogcap export shopify -o match=pattern -o pattern="{handle}-{position}" -o input=... --out ...
    catalogcap export shopify --out alt_text.csv          # a fresh Handle/Image Src/Position/Alt CSV
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from catalogcap.errors import CatalogcapError
from catalogcap.plugins import hookimpl
from catalogcap.plugins.events import CaptionEvent
from catalogcap.plugins.exporters import write_atomic
from catalogcap_shopify import fill

__version__ = "0.1.0"
SHOPIFY_ALT_LIMIT = 512


class ShopifySettings(BaseModel):
    """`[plugin_config.shopify]`."""

    model_config = ConfigDict(extra="forbid")

    input: Path | None = Field(
        None, description="The Shopify product CSV export to fill; without it a fresh four-column CSV is"
        " written.")
    match: Literal["src", "pattern"] = Field(
        "src", description="src: match rows by the file name in Image Src; pattern: by `pattern` over Handle"
        " and Image Position.")
    pattern: str = Field(
        "{handle}-{position}", description="Local file name (without extension) of a product image, from"
        " {handle} and {position}.")
    overwrite: bool = Field(
        False, description="Replace alt text a row already has (default: keep it and report it)."
        " Same as overwrite_human.")
    overwrite_human: bool = Field(
        False, description="Replace alt text a person already wrote in a row (default: keep it, count it as"
        " kept_human); `catalogcap export --overwrite-human` sets it for one run.")
    max_length: int = Field(
        SHOPIFY_ALT_LIMIT, ge=16, le=SHOPIFY_ALT_LIMIT, description="Longest alt text written; longer text is"
        " cut at a word boundary (Shopify allows 512 characters).")
    src_prefix: str = Field(
        "", description="Fresh CSV only: URL prefix of Image Src (e.g. https://cdn.example.com/img/);"
        " default: the bare file name.")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        unknown = set(re.findall(r"\{([^}]*)\}", value)) - {"handle", "position"}
        if "{handle}" not in value or unknown or value.count("{") != value.count("}"):
            raise ValueError("use {handle} and optionally {position}, e.g. {handle}-{position}")
        return value


@hookimpl
def register_settings(register):
    register("shopify", ShopifySettings)


@hookimpl
def register_exporters(register):
    register("shopify", export_shopify, "Fill Image Alt Text of a Shopify product CSV (-o input=FILE), or a"
             " fresh alt-text CSV.")


def export_shopify(events: Iterable[CaptionEvent], dest: str | Path | None, options: dict[str, Any]
                   ) -> dict[str, Any]:
    config = ShopifySettings.model_validate(options)
    events = list(events)
    if config.input is None:
        data, report = fill.fresh(events, pattern=config.pattern, src_prefix=config.src_prefix,
                                  limit=config.max_length)
    else:
        source = config.input.expanduser()
        if dest not in (None, "-") and Path(dest).resolve() == source.resolve():
            raise CatalogcapError(f"--out {dest} is the input CSV; write to a new file and keep the export")
        try:
            original = source.read_bytes()
        except OSError as exc:
            raise CatalogcapError(f"cannot read the Shopify CSV {source}: {exc.strerror or exc}") from None
        data, report = fill.fill(original, str(source), events, match=config.match, pattern=config.pattern,
                                 overwrite=config.overwrite or config.overwrite_human, limit=config.max_length)
    write_atomic(dest, data)
    return {"input": str(config.input) if config.input else None, "dest": str(dest or "-"),
            "kept_human": len(report.kept_existing), **asdict(report)}
