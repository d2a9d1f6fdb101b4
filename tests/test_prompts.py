"""Prompt templates with product fields: safe parsing, clean drop-out, casing, folder globs, profiles."""

from __future__ import annotations

import pytest

from catalogcap.errors import SettingsError
from catalogcap.products.prompts import (
    MAX_VALUE_CHARS,
    TemplateError,
    folder_matches,
    parse_template,
    render,
    restore_casing,
)
from catalogcap.settings import load_settings

T = "{brand} {category},"


@pytest.mark.parametrize(("values", "expected"), [
    ({"brand": "NordLight", "category": "lamp"}, "NordLight lamp,"),
    ({"category": "lamp"}, "lamp,"),
    ({"brand": "NordLight"}, "NordLight,"),
    ({}, ""),
    ({"brand": None, "category": "  "}, ""),
])
def test_missing_fields_drop_out_cleanly(values, expected) -> None:
    rendered = render(T, values)
    assert rendered.prompt == expected
    assert rendered.keep == bool(expected)
    assert rendered.fields == {k: v for k, v in values.items() if v and v.strip()}


@pytest.mark.parametrize(("template", "values", "expected"), [
    ("{brand}, {category}", {"category": "lamp"}, "lamp"),
    ("{brand}, {category}", {"brand": "NordLight"}, "NordLight"),
    ("{title} ({color})", {"title": "Arc lamp"}, "Arc lamp"),
    ("{title} ({color}, {material})", {"title": "Arc lamp", "material": "oak"}, "Arc lamp (oak)"),
    ("{brand} - {title}: {color}", {"title": "Arc lamp"}, "Arc lamp"),
    ("a photo of {brand} {category}", {"category": "lamp"}, "a photo of lamp"),
    ("{sku} {brand} {category} in {color},", {"sku": "X-1", "color": "red"}, "X-1 in red,"),
])
def test_separators_brackets_and_spaces_follow_the_fields(template, values, expected) -> None:
    prompt = render(template, values).prompt
    assert prompt == expected
    assert "None" not in prompt and "  " not in prompt and "()" not in prompt and not prompt.startswith((",", " "))


def test_a_template_whose_fields_are_all_missing_is_a_plain_prompt() -> None:
    rendered = render("a product photo of {brand}", {})
    assert rendered.prompt == "a product photo of" and not rendered.keep and rendered.provenance() == {}
    plain = render("a product photo of", {"brand": "NordLight"})
    assert plain.prompt == "a product photo of" and not plain.keep


def test_values_are_data_normalised_and_capped() -> None:
    hostile = {"brand": "{title.__class__} {0} {{x}}", "category": "lamp\n\t\x00with   spaces",
               "title": "word " * 200}
    rendered = render("{brand} {category} {title}", hostile)
    assert rendered.prompt.startswith("{title.__class__} {0} {{x}} lamp with spaces word")
    assert "\x00" not in rendered.prompt and "\n" not in rendered.prompt
    assert len(rendered.fields["title"]) <= MAX_VALUE_CHARS
    assert len(rendered.prompt) < 200


@pytest.mark.parametrize("template", ["{brand.__class__}", "{brand[0]}", "{brand!r}", "{brand:>10}", "{}", "{0}",
                                      "{brand", "brand}", "{a-b}"])
def test_hostile_templates_are_refused(template) -> None:
    with pytest.raises(TemplateError):
        parse_template(template)


def test_literal_braces_and_plain_fields_parse() -> None:
    assert parse_template("{{literal}} {brand} {made_in}").fields == ["brand", "made_in"]
    assert render("{{x}} {brand}", {"brand": "A"}).prompt == "{x} A"


def test_a_bad_template_fails_the_settings_naming_the_setting(home) -> None:
    (home / "catalogcap.toml").write_text('[generation.alt_text]\nprompt = "{brand.__class__} x"\n')
    with pytest.raises(SettingsError, match=r"generation\.alt_text\.prompt.*attribute access"):
        load_settings()


def test_casing_comes_back_in_the_catalogs_spelling() -> None:
    text = "Nordlight lamp, a nordlight cafe lamp by ikea on a desk"
    fields = ["NordLight", "Café", "IKEA", "Aurora Desk Lamp", "lamp"]
    assert restore_casing(text, fields) == "NordLight lamp, a NordLight Café lamp by IKEA on a desk"
    assert restore_casing("the aurora desk lamp", ["Aurora Desk Lamp"]) == "the Aurora Desk Lamp"
    assert restore_casing("nordlights and unordlight", ["NordLight"]) == "nordlights and unordlight"


@pytest.mark.parametrize(("patterns", "path", "matches"), [
    (["*/shoes/*"], "/photos/shoes/a.jpg", True),
    (["*/shoes/*"], "/photos/shoes/sub/a.jpg", False),
    (["**/shoes/**"], "/photos/shoes/sub/a.jpg", True),
    (["/catalog/furniture/**"], "/catalog/furniture/a/b.jpg", True),
    (["/catalog/furniture/**"], "/x/catalog/furniture/b.jpg", False),
    (["shoes/*.jpg"], "/a/shoes/b.jpg", True),
    (["shoes/*.jpg"], "/a/myshoes/b.jpg", False),
    (["*/sho?s/[ab]*"], "/x/shoes/b1.png", True),
])
def test_folder_globs(patterns, path, matches) -> None:
    assert folder_matches(patterns, path) is matches


PROFILES = """
[[profiles]]
name = "shoes"
folders = ["**/shoes/**"]
alt_text_limit = 80
[profiles.generation.alt_text]
prompt = "{brand} {category},"
num_beams = 1

[[profiles]]
name = "furniture"
folders = "/catalog/furniture/**"
generation.description.max_new_tokens = 20
"""


def test_profiles_load_match_first_wins_and_override(home) -> None:
    (home / "catalogcap.toml").write_text(PROFILES + '\n[[profiles]]\nname = "all"\nfolders = ["*"]\n')
    settings = load_settings()
    assert [p.name for p in settings.profiles] == ["shoes", "furniture", "all"]
    assert settings.profile_for("/a/shoes/x.jpg").name == "shoes"
    assert settings.profile_for("/catalog/furniture/shoes/x.jpg").name == "shoes"  # first match wins
    assert settings.profile_for("/catalog/furniture/x.jpg").name == "furniture"
    assert settings.profile_for("/elsewhere/x.jpg").name == "all"
    shoes = settings.for_profile("shoes")
    assert shoes.generation.alt_text.prompt == T and shoes.generation.alt_text.num_beams == 1
    assert shoes.alt_text_limit == 80 and settings.alt_text_limit == 125
    assert shoes.generation.alt_text.max_new_tokens == settings.generation.alt_text.max_new_tokens
    furniture = settings.for_profile("furniture")
    assert furniture.generation.description.max_new_tokens == 20
    assert furniture.generation.description.prompt == settings.generation.description.prompt


@pytest.mark.parametrize(("extra", "message"), [
    ('[[profiles]]\nname = "shoes"\nfolders = ["x"]\n', "two profiles are named 'shoes'"),
    ('[[profiles]]\nname = "bad"\nfolders = ["x"]\ncolour = 1\n', "profile 'bad': unknown key"),
    ('[[profiles]]\nname = "bad"\nfolders = ["x"]\ngeneration.alt_text.beams = 1\n',
     r"profile 'bad': unknown setting\(s\) generation.alt_text.beams"),
    ('[[profiles]]\nname = "bad"\nfolders = ["x"]\ngeneration.caption.prompt = "x"\n',
     "profile 'bad': unknown caption kind"),
    ('[[profiles]]\nname = "bad"\nfolders = ["x"]\ngeneration.alt_text.num_beams = 99\n',
     r"profile 'bad': generation.alt_text.num_beams"),
    ('[[profiles]]\nname = "bad"\nfolders = ["x"]\ngeneration.alt_text.prompt = "{a[0]}"\n',
     r"profile 'bad': generation.alt_text.prompt.*indexing"),
])
def test_bad_profiles_are_refused_naming_the_profile(home, extra, message) -> None:
    (home / "catalogcap.toml").write_text(PROFILES + "\n" + extra)
    with pytest.raises(SettingsError, match=message):
        load_settings()


def test_config_show_lists_the_profiles(home) -> None:
    from click.testing import CliRunner

    from catalogcap.cli import cli

    (home / "catalogcap.toml").write_text(PROFILES)
    result = CliRunner().invoke(cli, ["config", "show"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "shoes" in result.output and "**/shoes/**" in result.output
    assert "generation.alt_text.num_beams = 1" in result.output and "alt_text_limit = 80" in result.output
    assert "/catalog/furniture/**" in result.output


def test_the_stored_text_keeps_the_prefix_and_restores_names_in_the_continuation() -> None:
    from catalogcap.captioner.generate import Captioner

    rendered = render(T, {"brand": "NordLight", "category": "lamp"})
    fields = {"brand": "NordLight", "category": "lamp", "material": "Rattan"}
    finish = Captioner._finish
    assert finish("alt_text", "a photo of a red nordlight shade in rattan", rendered, 125, fields) == (
        "NordLight lamp, a photo of a red NordLight shade in Rattan")
    assert finish("alt_text", "", rendered, 125, fields) == "NordLight lamp"  # nothing dangling
    assert finish("alt_text", "red " * 40, rendered, 30, fields).startswith("NordLight lamp, red")
    assert len(finish("alt_text", "striped red shade on a brass stand " * 3, rendered, 30, fields)) <= 30
    plain = render("a product photo of", fields)
    assert finish("description", "a red lamp", plain, 125, {}) == "A red lamp."  # no fields: stripped as before
    # a title that holds the category ("NordLight Hat") never recases the rendered prefix
    hat = {"brand": "NordLight", "category": "hat", "title": "NordLight Hat"}
    assert finish("alt_text", "wool hat, nordlight hat", render(T, hat), 125, hat) == (
        "NordLight hat, wool hat, NordLight Hat")
    lower = {"brand": "oakhaus", "category": "bag"}
    assert finish("alt_text", "in canvas", render(T, lower), 125, lower) == "Oakhaus bag, in canvas"
