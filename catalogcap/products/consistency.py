"""Consistency checks of a caption against its product context and the text rules.

`caption_warnings` returns a list of warnings, each {"code": ..., "message": ...} (plus details
such as "field", "said", "expected"), stored on the caption and shown to reviewers.

Contradictions (`contradicts_color`, `contradicts_material`, `contradicts_category`): the
caption names words of a kind (colours, materials, product types: the built-in English lists of
`catalogcap.products.vocabulary` plus every value of that field in the products table) and none
of them agrees with the context's value. A word agrees when its words are words of the value
or the other way round ("navy" and "dark navy"), plural or singular alike ("sneaker" and
"Sneakers"), grey and gray alike; a colour shade agrees with the value naming its family
("navy" for a "blue" product, not "blue" for a "navy" one); a product type or material agrees
with a narrower or broader one ("shoe" and "sneakers", "wooden" and "oak"). A colour right
before "background" or "backdrop" describes the photo, not the product, and is not counted.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import sqlalchemy as sa

from catalogcap.captioner.text import ARTEFACTS, LEADING_FILLER, TOKEN, _collapse_repeats, _drop_repeated_ngrams
from catalogcap.products.vocabulary import BUILTIN, COLOR_FAMILIES, TYPE_FAMILIES
from catalogcap.store.captions import length_problem

CHECKED = ("color", "material", "category")
FIELD_NAMES = {"color": "colour", "material": "material", "category": "product type"}
ALIASES = {"gray": "grey", "wooden": "wood", "metallic": "metal", "colour": "color", "multicolour": "multicolor",
           "multicoloured": "multicolor", "multicolored": "multicolor"}
MATERIAL_FAMILIES = {
    "oak": "wood", "walnut": "wood", "pine": "wood", "teak": "wood", "bamboo": "wood",
    "stainless steel": "steel", "cast iron": "iron", "sterling silver": "silver", "steel": "metal", "iron": "metal",
    "aluminum": "metal", "aluminium": "metal", "brass": "metal", "copper": "metal", "bronze": "metal",
    "chrome": "metal", "titanium": "metal", "porcelain": "ceramic", "stoneware": "ceramic",
    "terracotta": "ceramic", "crystal": "glass", "cashmere": "wool", "faux fur": "fur",
}
FAMILIES = {"color": COLOR_FAMILIES, "material": MATERIAL_FAMILIES, "category": TYPE_FAMILIES}
NOT_THE_PRODUCT = re.compile(r"^[\s-]*(?:background|backdrop|wall|surface)\b", re.IGNORECASE)
WORD = re.compile(r"[\w]+(?:-[\w]+)*")


def stem(word: str) -> str:
    """A word's comparable form: lower case, one spelling, singular ("Sneakers" -> "sneaker")."""
    word = ALIASES.get(word.lower(), word.lower())
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 4 and word.endswith(("ses", "xes", "ches", "shes")):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    return ALIASES.get(word, word)


def words(text: str) -> frozenset[str]:
    return frozenset(stem(w) for w in WORD.findall(text.lower()))


def term_key(term: str) -> str:
    return " ".join(stem(w) for w in WORD.findall(term.lower()))


# --- the vocabulary: built-in words plus the catalog's own values -------------------------------

_lock = threading.Lock()
_cached: tuple[Any, dict[str, frozenset[str]]] | None = None


def catalog_vocabulary(session: Any) -> dict[str, frozenset[str]]:
    """Every distinct color, material and category value of the products table, lower-cased.
    Cached per process; one cheap query (row count, last change) tells when to read it again."""
    global _cached
    from catalogcap.store.models import Product

    stamp = tuple(session.execute(sa.select(sa.func.count(), sa.func.max(Product.updated_at),
                                            sa.func.max(Product.id))).one())
    stamp = (str(session.get_bind().url), *stamp)
    with _lock:
        if _cached is not None and _cached[0] == stamp:
            return _cached[1]
    found: dict[str, set[str]] = {name: set() for name in CHECKED}
    for name in CHECKED:
        column = getattr(Product, name)
        for (value,) in session.execute(sa.select(column).where(column.is_not(None)).distinct()):
            if value and value.strip():
                found[name].add(" ".join(value.lower().split()))
    vocabulary = {name: frozenset(values) for name, values in found.items()}
    with _lock:
        _cached = (stamp, vocabulary)
    return vocabulary


@lru_cache(maxsize=32)
def _finder(terms: frozenset[str]) -> re.Pattern[str]:
    """One regex finding any of `terms` as whole words (each word plural or not), longest first."""
    alternatives = []
    for term in sorted(terms, key=lambda t: (-len(t), t)):
        parts = WORD.findall(term)
        if not parts:
            continue
        alternatives.append(r"[\s-]+".join(re.escape(p) for p in parts) + r"(?:s|es)?")
    return re.compile(r"(?<![\w-])(?:" + "|".join(alternatives or ["(?!)"]) + r")(?![\w-])", re.IGNORECASE)


def _terms(field: str, extra: Iterable[str]) -> frozenset[str]:
    return frozenset(BUILTIN[field]) | frozenset(extra)


def _families(field: str, key: str) -> set[str]:
    """The broader words of a term (its family, and the family's family)."""
    table = {term_key(k): term_key(v) for k, v in FAMILIES[field].items()}
    found: set[str] = set()
    while key in table and table[key] not in found:
        key = table[key]
        found.add(key)
    return found


def agrees(field: str, said: str, expected: str, terms: frozenset[str]) -> bool:
    """Whether a caption naming `said` agrees with the catalog's `expected` value of `field`."""
    said_key, said_words, value_words = term_key(said), words(said), words(expected)
    if not said_words or said_words <= value_words or value_words <= said_words:
        return True
    if any(set(f.split()) <= value_words for f in _families(field, said_key)):
        return True  # a shade of the catalog's colour, a narrower type or material
    if field == "color":
        return False  # the catalog names a shade: its family alone is not what the shopper reads
    for match in _finder(terms).finditer(expected):  # a broader type or material than the catalog's
        if any(set(f.split()) <= said_words for f in _families(field, term_key(match.group(0)))):
            return True
    return False


def contradictions(text: str, fields: dict[str, Any], vocabulary: dict[str, frozenset[str]] | None
                   ) -> list[dict[str, Any]]:
    found = []
    for field in CHECKED:
        expected = str(fields.get(field) or "").strip()
        if not expected:
            continue
        terms = _terms(field, (vocabulary or {}).get(field, ()))
        said = []
        for match in _finder(terms).finditer(text):
            if field == "color" and NOT_THE_PRODUCT.match(text[match.end():]):
                continue
            said.append(match.group(0))
        if not said or any(agrees(field, s, expected, terms) for s in said):
            continue
        name = FIELD_NAMES[field]
        found.append({"code": f"contradicts_{field}", "field": field, "said": said[0], "expected": expected,
                      "message": f"says '{said[0]}' but the catalog's {name} is '{expected}'"})
    return found


def missing_fields(text: str, context: dict[str, Any]) -> list[dict[str, Any]]:
    """The template asked for {brand} / {title}, the context had it, the text lost it."""
    template = str(context.get("template") or "")
    fields = context.get("fields") or {}
    found = []
    for field in ("brand", "title"):
        value = str(fields.get(field) or "").strip()
        if value and "{" + field + "}" in template and value.casefold() not in text.casefold():
            found.append({"code": f"missing_{field}", "field": field, "expected": value,
                          "message": f"does not name the {field} '{value}' the prompt gave"})
    return found


def text_rules(kind: str, text: str) -> list[dict[str, Any]]:
    """The alt-text rules the captioner applies (`catalogcap.captioner.text`), for text a person typed."""
    found = []
    if not text.strip():
        found.append({"code": "empty", "message": "the text is empty"})
        return found
    if kind == "alt_text" and LEADING_FILLER.match(text.strip()):
        found.append({"code": "filler_opening",
                      "message": 'starts with "image of" or similar: screen readers already say "image"'})
    if ARTEFACTS.search(text):
        found.append({"code": "artefact", "message": 'contains a model artefact word ("arafed")'})
    tokens = TOKEN.findall(text.lower())
    if _collapse_repeats(list(tokens)) != tokens or _drop_repeated_ngrams(tokens) != tokens:
        found.append({"code": "repeats", "message": "repeats itself"})
    return found


def caption_warnings(kind: str, text: str, context: dict[str, Any] | None, *, alt_text_limit: int,
                     vocabulary: dict[str, frozenset[str]] | None = None) -> list[dict[str, Any]]:
    """The problems a reviewer should see in `text`, a caption of `kind` made with `context`
    (the provenance dict saved with the caption). `vocabulary`: the catalog's own words of each
    checked field (`catalog_vocabulary`), added to the built-in ones."""
    context = context or {}
    warnings: list[dict[str, Any]] = []
    problem = length_problem(kind, text, alt_text_limit)
    if problem:
        warnings.append({"code": "too_long", "message": problem})
    warnings += text_rules(kind, text)
    # the product data: what the prompt used, and all the catalog knew of the image when checked
    facts = {**(context.get("fields") or {}), **(context.get("product") or {})}
    # a prompt's rendered prefix ("NordLight lamp,") is the catalog's own words, not the model's claim:
    # only the model's continuation can contradict the catalog
    prompt = str(context.get("prompt") or "").rstrip(" ,;:-")
    checked = text[len(prompt):] if prompt and text.casefold().startswith(prompt.casefold()) else text
    warnings += contradictions(checked, facts, vocabulary)
    warnings += missing_fields(text, context)
    return warnings


# --- keeping warnings true when the product data changes ------------------------------------------


def known_context(fields: dict[str, str], sources: list[dict[str, Any]]) -> dict[str, Any]:
    """The `context` stored with a caption whose prompt used no product field: the product data
    known for its image when it was checked (so contradictions are found with any template)."""
    return {"fields": dict(fields), "sources": list(sources)} if fields else {}


def refresh(session: Any, asset_ids: Iterable[int], *, alt_text_limit: int) -> int:
    """Recheck the captions of `asset_ids` against their images' product data as it is now (an
    import, a sidecar or an API call changed it): a caption whose prompt used product fields
    keeps that provenance; any other caption's known product data is replaced. Warnings are
    recomputed; text, state and version are untouched. Returns how many captions changed."""
    from sqlmodel import col, select

    from catalogcap.products.prompts import resolve_contexts
    from catalogcap.store.models import Caption, utcnow

    ids = sorted(set(asset_ids))
    if not ids:
        return 0
    vocabulary = catalog_vocabulary(session)
    changed = 0
    now = utcnow()
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        contexts = resolve_contexts(session, chunk)
        captions = session.exec(select(Caption).where(col(Caption.asset_id).in_(chunk),
                                                      Caption.state != "superseded")).all()
        for caption in captions:
            context = dict(caption.context or {})
            current = contexts.get(caption.asset_id)
            if not context.get("template"):
                context = known_context(current.fields, current.sources) if current else {}
            elif current and current.fields:  # what the prompt used stays; the catalog's data is today's
                context["product"] = dict(current.fields)
            else:
                context.pop("product", None)
            warnings = caption_warnings(caption.kind, caption.text, context, alt_text_limit=alt_text_limit,
                                        vocabulary=vocabulary)
            if context != (caption.context or {}) or warnings != (caption.warnings or []):
                caption.context, caption.warnings, caption.updated_at = context, warnings, now
                session.add(caption)
                changed += 1
    session.flush()
    return changed
