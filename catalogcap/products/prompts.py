"""Prompt templates that use product data, per-folder profiles, and the context a worker uses.

A `generation.<kind>.prompt` may name fields of the image's product context: ``{brand}
{category},``. Only plain ``{name}`` placeholders (Python identifiers) are allowed: attribute
access, indexing, conversions and format specs are refused when the settings load
(`check_template`). Rendering (`render`) substitutes the values itself, never through
`str.format`, so braces inside a value stay text. A value is whitespace-normalised and cut
to `MAX_VALUE_CHARS` at a word boundary.

A field the image lacks drops out with the separator that joins it to the text before it
(or, at the start or just inside a bracket, the separator after it); empty brackets go, leading punctuation goes,
doubled punctuation collapses. ``{brand} {category},`` renders ``NordLight lamp,``, ``lamp,``
without a brand and ``""`` (unprompted) with neither. When no field of a template has a
value, the prompt is the template's literal text, tidied, and behaves like a prompt without
fields (stripped from the caption).

This module imports nothing heavy at import time: settings.py uses `check_template`.
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlmodel import Session

    from catalogcap.products.context import Context
    from catalogcap.settings import Settings

MAX_VALUE_CHARS = 100
_MISSING = "\x00"
_SEPARATOR = r"[\s,;:/|·\-–—]*"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class TemplateError(ValueError):
    """A prompt template that uses more than plain {name} placeholders."""


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and field names, in order."""

    text: str
    parts: tuple[tuple[str, str | None], ...]  # (literal before, field name or None)

    @property
    def fields(self) -> list[str]:
        return [name for _, name in self.parts if name is not None]


def parse_template(text: str) -> Template:
    """Parse a prompt template; `TemplateError` names what is not allowed."""
    parts: list[tuple[str, str | None]] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(f"not a valid template ({exc}); write literal braces as {{{{ and }}}}") from None
    for literal, name, spec, conversion in parsed:
        if name is None:
            parts.append((literal, None))
            continue
        if conversion:
            raise TemplateError(f"{{{name}!{conversion}}}: conversions are not allowed; write {{{name}}}")
        if spec:
            raise TemplateError(f"{{{name}:{spec}}}: format specs are not allowed; write {{{name}}}")
        if not name:
            raise TemplateError("{} needs a field name, e.g. {brand}")
        if not name.isidentifier():
            raise TemplateError(
                f"{{{name}}}: only plain field names are allowed (no attribute access, indexing or numbers),"
                " e.g. {brand}")
        parts.append((literal, name))
    return Template(text, tuple(parts))


def check_template(text: str) -> str:
    """Settings validator: the template unchanged, or ValueError saying what is wrong."""
    parse_template(text)
    return text


def clean_value(value: Any) -> str:
    """A field value as it goes into a prompt: text, control characters out, whitespace
    normalised, at most `MAX_VALUE_CHARS` (cut at a word boundary)."""
    if value is None:
        return ""
    text = " ".join(_CONTROL.sub(" ", str(value)).split())
    if len(text) > MAX_VALUE_CHARS:
        cut = text[:MAX_VALUE_CHARS + 1]
        space = cut.rfind(" ")
        text = (cut[:space] if space > MAX_VALUE_CHARS // 2 else text[:MAX_VALUE_CHARS]).rstrip(" ,;:-")
    return text


def _tidy(text: str) -> str:
    for _ in range(3):
        text = re.sub(r"[(\[{]" + rf"(?:{_MISSING}|[\s,;:/|\-])*" + r"[)\]}]", "", text)  # empty brackets
    # a missing field at the start (of the text or of brackets) takes the separator after it;
    # elsewhere the one before it
    while _MISSING in text:
        head = re.search(rf"(?:^|(?<=[(\[{{])){_SEPARATOR}{_MISSING}{_SEPARATOR}", text)
        if head:
            text = text[:head.start()] + text[head.end():]
            continue
        text = re.sub(rf"{_SEPARATOR}{_MISSING}", "", text, count=1)
    text = " ".join(text.split())
    text = re.sub(r"\s+([,;:.!?)\]])", r"\1", text)
    text = re.sub(r"([(\[])\s+", r"\1", text)
    text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text)
    text = re.sub(r"^[\s,;:.!?/|·\-–—]+", "", text)
    return text if re.search(r"\w", text) else ""


@dataclass(frozen=True)
class Rendered:
    """A template rendered for one image."""

    template: str
    prompt: str  # what the model continues from ("" = unprompted)
    fields: dict[str, str] = field(default_factory=dict)  # the field values used
    fallback: str | None = None  # why the rendered prompt was not used

    @property
    def keep(self) -> bool:
        """Whether the caption keeps the prompt as its start: a prompt that uses product data."""
        return bool(self.fields) and bool(self.prompt)

    def provenance(self, sources: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        if not self.fields and not self.fallback:
            return {}
        record: dict[str, Any] = {"fields": dict(self.fields), "template": self.template, "prompt": self.prompt,
                                  "sources": list(sources)}
        if self.fallback:
            record["fallback"] = self.fallback
        return record


def render(template: str | Template, values: Mapping[str, Any] | None) -> Rendered:
    """Render a template with an image's field values (missing ones drop out, see the module doc)."""
    parsed = template if isinstance(template, Template) else parse_template(template)
    if not parsed.fields:
        return Rendered(parsed.text, parsed.text.strip())
    values = values or {}
    used: dict[str, str] = {}
    pieces: list[str] = []
    for literal, name in parsed.parts:
        pieces.append(_CONTROL.sub(" ", literal))
        if name is not None:
            value = clean_value(values.get(name))
            if value:
                used[name] = value
                pieces.append(value)
            else:
                pieces.append(_MISSING)
    # values are inserted as text: a brace or a separator inside one is never interpreted
    return Rendered(parsed.text, _tidy("".join(pieces)), used)


# ---------------------------------------------------------------------------- casing


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def _own_spelling(word: str) -> bool:
    """Whether a word's casing is its own (NordLight, IKEA, iPhone) rather than title case."""
    return any(c.isupper() for c in word[1:]) or (word[:1].islower() and any(c.isupper() for c in word))


def restore_casing(text: str, values: Iterable[str]) -> str:
    """Put context values back in the catalog's spelling where the (lower-cased, accent-stripped)
    model output has them: whole values first (longest first), then single words of a value whose
    casing is their own (NordLight, IKEA: not plain title case, which would turn "desk" into "Desk")."""
    targets: list[str] = []
    for value in values:
        value = clean_value(value)
        if value and (any(c.isupper() for c in value) or _strip_accents(value) != value):
            targets.append(value)
    words = {w for v in targets for w in re.findall(r"\w+(?:['’-]\w+)*", v) if len(w) > 1 and _own_spelling(w)}
    for target in sorted(targets, key=len, reverse=True) + sorted(words - set(targets), key=len, reverse=True):
        for form in {target, _strip_accents(target)}:
            text = re.sub(rf"(?<!\w){re.escape(form)}(?!\w)", lambda _m, t=target: t, text, flags=re.IGNORECASE)
    return text


# ---------------------------------------------------------------------------- profiles


@functools.lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A folder glob as a regex: ``**`` any number of folders, ``*`` and ``?`` within one name,
    ``[...]`` a character class. A pattern that does not start with ``/`` matches the end of the
    path (any folders before it)."""
    pattern = pattern.replace("\\", "/")
    anchored = pattern.startswith("/")
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append(r"(?:[^/]*/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(r".*")
            i += 2
        elif c == "*":
            out.append(r"[^/]*")
            i += 1
        elif c == "?":
            out.append(r"[^/]")
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end == -1:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1:end]
                body = "^" + body[1:] if body.startswith("!") else body.replace("\\", "\\\\")
                out.append(f"[{body}]")
                i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    prefix = "" if anchored else r"(?:.*/)?"
    return re.compile(prefix + "".join(out) + r"\Z")


def folder_matches(patterns: Sequence[str], path: str | Path) -> bool:
    text = PurePosixPath(str(path).replace("\\", "/")).as_posix()
    return any(_glob_regex(p).match(text) for p in patterns)


# ---------------------------------------------------------------------------- context


def resolve_context(session: Session, asset_id: int, paths: list[str] | None = None) -> Context:
    """The product context prompts use for one asset: the store's rows and the
    `product_context` plugins' fields (`context_with_plugins`)."""
    from catalogcap.products.hooks import context_with_plugins

    return context_with_plugins(session, asset_id, paths)


def resolve_contexts(session: Session, asset_ids: Iterable[int]) -> dict[int, Context]:
    """The product context of many assets: with two queries (their live paths, the product rows
    that could name any of them) merged per asset by `context_for`'s own rules; when a plugin
    implements `product_context`, asset by asset through `context_with_plugins`."""
    from sqlmodel import col, or_, select

    from catalogcap.products.context import fold, match_keys, merge, names_the_image, ordered
    from catalogcap.products.hooks import HOOK, context_with_plugins, default_manager
    from catalogcap.store.models import AssetPath, Product

    ids = sorted(set(asset_ids))
    if not ids:
        return {}
    pm = default_manager()
    if getattr(pm.hook, HOOK).get_hookimpls():
        return {asset_id: context_with_plugins(session, asset_id, pm=pm) for asset_id in ids}
    paths: dict[int, list[str]] = {i: [] for i in ids}
    rows = session.exec(select(AssetPath.asset_id, AssetPath.path, AssetPath.source_name).where(
        col(AssetPath.asset_id).in_(ids), col(AssetPath.missing).is_(False))).all()
    for asset_id, path, source_name in rows:
        paths[asset_id].append(path)
        if source_name:
            paths[asset_id].append(source_name)
    folded = {fold(p) for ps in paths.values() for p in ps}
    products = session.exec(select(Product).where(or_(col(Product.asset_id).in_(ids),
                                                      col(Product.file_folded).in_(folded)))).all()
    contexts: dict[int, Context] = {}
    for asset_id in ids:
        names = {fold(p) for p in paths[asset_id]}
        keys = {k for p in paths[asset_id] for k in match_keys(p)}
        contexts[asset_id] = merge(ordered([r for r in products if names_the_image(r, asset_id, names, keys)]))
    return contexts


def uses_context(settings: Settings) -> bool:
    """Whether any template (top level or a profile's) names a field: else no context is needed."""
    from catalogcap.settings import KINDS

    templates = [settings.generation.for_kind(k).prompt for k in KINDS]
    for profile in settings.profiles:
        templates += [profile.generation.get(k, {}).get("prompt", "") for k in KINDS]
    return any(parse_template(t).fields for t in templates)


@dataclass(frozen=True)
class ImageRequest:
    """What a captioner needs to know about one image besides its pixels: its path (for the
    profile) and its product context's fields."""

    path: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
