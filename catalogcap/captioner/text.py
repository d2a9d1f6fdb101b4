"""Cleaning rules for generated captions.

Alt text is read aloud by screen readers next to the word "image", so it must not start
with "image of"; BLIP's training data leaves artefact words ("arafed", "araffe") and
loops ("a shirt a shirt a shirt") that a reviewer should never see.
"""

from __future__ import annotations

import re

LEADING_FILLER = re.compile(
    r"^(?:(?:there is|this is|here is|it is)\s+)?"
    r"(?:(?:an?|the)\s+)?"
    r"(?:(?:close[\s-]?up|closeup|picture|photo(?:graph)?|image|shot|view|stock photo|product photo)"
    r"\s+(?:of|showing|shows|with)(?:\s+|$))+",
    re.IGNORECASE,
)
ARTEFACTS = re.compile(r"\b(?:ara+f+e+d?|araffe|arafed|arafe|arrafed|araff)\b\s*", re.IGNORECASE)
SPACES = re.compile(r"\s+")
SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?%)])")
SPACE_AFTER_OPEN = re.compile(r"([(])\s+")
TOKEN = re.compile(r"\w+(?:['-]\w+)*|[^\w\s]")


def _collapse_repeats(words: list[str], max_n: int = 4) -> list[str]:
    """Drop immediately repeated n-grams ("red red shirt", "a mug a mug") for n = max_n..1."""
    changed = True
    while changed:
        changed = False
        for n in range(max_n, 0, -1):
            i = 0
            out: list[str] = []
            while i < len(words):
                if i >= n and [w.lower() for w in words[i : i + n]] == [w.lower() for w in out[-n:]]:
                    i += n
                    changed = True
                    continue
                out.append(words[i])
                i += 1
            words = out
    return words


def _drop_repeated_ngrams(words: list[str], n: int = 3) -> list[str]:
    """Stop at the first n-gram that already occurred (a loop that is not adjacent)."""
    seen: set[tuple[str, ...]] = set()
    for i in range(len(words) - n + 1):
        gram = tuple(w.lower() for w in words[i : i + n])
        if gram in seen:
            return words[: i]
        seen.add(gram)
    return words


def _tidy(text: str) -> str:
    text = SPACES.sub(" ", text).strip()
    text = SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = SPACE_AFTER_OPEN.sub(r"\1", text)
    text = re.sub(r"\s*([-/'])\s*", r"\1", text)
    return text


def sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def cut_at_word(text: str, limit: int) -> str:
    """Cut to at most `limit` characters at a word boundary, dropping dangling joiners."""
    if len(text) <= limit:
        return text
    cut = text[: limit + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space > 0 else text[:limit]
    words = cut.split(" ")
    while len(words) > 1 and words[-1].lower().strip(",;:") in {
        "a", "an", "the", "of", "with", "and", "on", "in", "for", "to", "or", "at", "by", "",
    }:
        words.pop()
    return " ".join(words).rstrip(",;:- ")


def strip_filler(text: str) -> str:
    """Remove openings like "a close up of a picture of", however many are stacked."""
    previous = None
    while previous != text:
        previous = text
        text = LEADING_FILLER.sub("", text).strip()
    return text


# "a" before a vowel sound: BLIP's lower-case vocabulary writes "a orange hat". Words that start
# with a vowel letter but a consonant sound keep "a" ("a one-piece", "a euro", "a uniform").
_A_BEFORE_VOWEL = re.compile(r"\b([Aa]) (?=(?!one\b|once\b|eu|ewe|u[bcfgklmnrst][aeiou]|uni|use|usu|ure|uk\b)"
                             r"[aeiouAEIOU])")


def fix_articles(text: str) -> str:
    """'a orange' -> 'an orange' (and 'A apple' -> 'An apple'); 'a uniform', 'a one-off' stay."""
    return _A_BEFORE_VOWEL.sub(lambda m: m.group(1) + "n ", text)


def clean_caption(text: str, *, prompt: str = "") -> str:
    """The rules shared by every kind: artefacts, repeats, spacing, 'a'/'an'."""
    text = text.strip().removeprefix("##")
    if prompt and text.lower().startswith(prompt.lower()):
        text = text[len(prompt) :]
    text = ARTEFACTS.sub("", text)
    words = TOKEN.findall(text)
    words = _drop_repeated_ngrams(_collapse_repeats(words))
    return fix_articles(_tidy(" ".join(words)))


def clean_alt_text(text: str, *, limit: int = 125, prompt: str = "") -> str:
    """Short alt text: no "image of" opening, no artefacts or loops, sentence case, within `limit`."""
    text = strip_filler(clean_caption(text, prompt=prompt))
    text = cut_at_word(text, limit).rstrip(" .")
    return sentence_case(text)


def clean_description(text: str, *, prompt: str = "", limit: int = 1000) -> str:
    """Longer product description: cleaned, sentence case, ends with a full stop."""
    text = strip_filler(clean_caption(text, prompt=prompt))
    text = cut_at_word(text, limit).rstrip(" ,;:-")
    if text and text[-1] not in ".!?":
        text += "."
    return sentence_case(text)


def alt_text_warnings(text: str, *, limit: int = 125) -> list[str]:
    """What a reviewer should look at before accepting an alt text (also the rule pass check)."""
    warnings: list[str] = []
    if not text.strip():
        warnings.append("empty")
    if len(text) > limit:
        warnings.append(f"longer than {limit} characters ({len(text)})")
    if LEADING_FILLER.match(text.strip()):
        warnings.append('starts with "image of" or similar: screen readers already say "image"')
    if ARTEFACTS.search(text):
        warnings.append('contains a model artefact word ("arafed")')
    words = TOKEN.findall(text.lower())
    if _collapse_repeats(list(words)) != words or _drop_repeated_ngrams(words) != words:
        warnings.append("repeats itself")
    return warnings
