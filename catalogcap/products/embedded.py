"""Human alt text embedded in an image's XMP packet (IPTC 2021 `Iptc4xmpCore:AltTextAccessibility`,
else `dc:description` when it fits the alt-text limit).

The packet is found by a bounded read of the file's first bytes (no decoder runs) and parsed
with xml.etree after refusing any DOCTYPE, so no entity is ever expanded (no billion laughs,
no external entity).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from pathlib import Path

log = logging.getLogger(__name__)
READ_BYTES = 4 * 2**20  # XMP sits near the start of JPEG, PNG, WebP and TIFF files
MAX_PACKET = 1 * 2**20
NS = {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "Iptc4xmpCore": "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/",
}
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def packet(path: Path, limit: int = READ_BYTES) -> bytes | None:
    """The `<x:xmpmeta ...>...</x:xmpmeta>` bytes in the first `limit` bytes of `path`, if any."""
    with open(path, "rb") as handle:
        head = handle.read(limit)
    start = head.find(b"<x:xmpmeta")
    if start < 0:
        return None
    end = head.find(b"</x:xmpmeta>", start)
    if end < 0 or end - start > MAX_PACKET:
        return None
    return head[start:end + len(b"</x:xmpmeta>")]


def _lang_alt(element: ET.Element | None) -> str | None:
    """The x-default (else the first) entry of an rdf:Alt, or the element's own text."""
    if element is None:
        return None
    items = element.findall("rdf:Alt/rdf:li", NS)
    if not items:
        return (element.text or "").strip() or None
    chosen = next((li for li in items if li.get(XML_LANG) == "x-default"), items[0])
    return (chosen.text or "").strip() or None


def alt_text(path: Path, limit: int) -> str | None:
    """Human alt text embedded in the image at `path`, or None (none, unreadable, or unsafe XML)."""
    try:
        data = packet(path)
    except OSError:
        return None
    if data is None or b"<!DOCTYPE" in data.upper() or b"<!ENTITY" in data.upper():
        return None
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        log.warning("%s: embedded XMP is not well-formed (%s); its alt text is not read", path, exc)
        return None
    for description in root.iter(f"{{{NS['rdf']}}}Description"):
        found = description.find("Iptc4xmpCore:AltTextAccessibility", NS)
        text = _lang_alt(found) or description.get(f"{{{NS['Iptc4xmpCore']}}}AltTextAccessibility")
        if text:
            return " ".join(text.split())
    for description in root.iter(f"{{{NS['rdf']}}}Description"):
        text = _lang_alt(description.find("dc:description", NS))
        if text and len(" ".join(text.split())) <= limit:
            return " ".join(text.split())
    return None
