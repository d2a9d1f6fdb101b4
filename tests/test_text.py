from __future__ import annotations

import pytest

from catalogcap.captioner.text import alt_text_warnings, clean_alt_text, clean_description, cut_at_word


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("arafed image of a red shirt on a white background", "A red shirt on a white background"),
        ("a close up of a picture of a mug with a handle", "A mug with a handle"),
        ("there is a photo of a blue shoe , with laces", "A blue shoe, with laces"),
        ("a red shirt a red shirt a red shirt", "A red shirt"),
        ("a pair of red red shoes", "A pair of red shoes"),
        ("araffe wearing a hat", "Wearing a hat"),
        ("a woman 's handbag", "A woman's handbag"),
        ("image of", ""),
    ],
)
def test_alt_text_rules(raw: str, expected: str) -> None:
    assert clean_alt_text(raw) == expected


def test_alt_text_cut_at_word_boundary_within_limit() -> None:
    raw = "a long striped cotton shirt with buttons and a collar on a wooden hanger against a grey wall"
    cleaned = clean_alt_text(raw, limit=40)
    assert len(cleaned) <= 40
    assert raw.lower().startswith(cleaned.lower())
    assert not cleaned.endswith((" a", " with", " and", ","))
    assert cut_at_word("abcdefghij", 5) == "abcde"


def test_description_strips_prompt_and_ends_with_stop() -> None:
    raw = "a product photo of a blue mug with a handle mug with a handle"
    text = clean_description(raw, prompt="a product photo of")
    assert text == "A blue mug with a handle."


def test_warnings() -> None:
    assert alt_text_warnings("A red shirt") == []
    warnings = alt_text_warnings("Image of an arafed shirt shirt" + "x" * 130)
    assert any("image of" in w for w in warnings)
    assert any("artefact" in w for w in warnings)
    assert any("longer than 125" in w for w in warnings)


def test_a_before_a_vowel_sound_becomes_an() -> None:
    from catalogcap.captioner.text import clean_alt_text, fix_articles

    assert clean_alt_text("a orange dotted hat on a beige background") == "An orange dotted hat on a beige background"
    assert fix_articles("a oak table with a ivory lamp") == "an oak table with an ivory lamp"
    for kept in ("a uniform", "a one-piece swimsuit", "a user guide", "a euro coin", "a unique vase", "a hat"):
        assert fix_articles(kept) == kept
