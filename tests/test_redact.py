"""What `config show` hides: secrets by setting name (whole words), URL passwords, secret query values;
and the commented config file `init` writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import tomllib
from click.testing import CliRunner

from catalogcap import redact
from catalogcap.cli import cli
from catalogcap.cli.setup import config_template
from catalogcap.settings import field_docs, load_settings, provenance

SAMPLE = "s3cr3t-value"


def every_setting() -> list[str]:
    """Every core setting and every setting of the shipped plugins, by dotted name."""
    from catalogcap.plugins.config import settings_models
    from catalogcap.plugins.manager import make_manager

    names = list(field_docs())
    for section, (model, _plugin) in settings_models(make_manager(["*"])).items():
        names += [f"plugin_config.{section}.{name}" for name in field_docs(model)]
    return names


def test_every_setting_is_listed_and_exactly_the_secret_ones_are_masked() -> None:
    names = every_setting()
    assert "generation.alt_text.max_new_tokens" in names and "plugin_config.webhook.secret_env" in names
    assert len(names) > 80
    masked = {name for name in names if redact.value(name, SAMPLE) == redact.HIDDEN}
    # No setting holds a secret itself: the token budgets, api.*, webhook.secret_env (the name of
    # the variable holding the secret) all show; secrets live in the environment.
    assert masked == set()
    assert {name for name in [*names, "plugin_config.x.api_token", "plugin_config.x.secret"]
            if redact.secret_name(name)} == {"plugin_config.x.api_token", "plugin_config.x.secret"}


@pytest.mark.parametrize("name", [
    "token", "api_token", "plugin_config.shopify.access_token", "webhook.secret", "client_secret", "password",
    "db_password", "passwd", "api_key", "plugin_config.x.api-key", "private_key", "credentials",
])
def test_secret_names_are_masked(name: str) -> None:
    assert redact.secret_name(name)
    assert redact.value(name, SAMPLE) == redact.HIDDEN


@pytest.mark.parametrize("name", [
    "generation.alt_text.max_new_tokens", "generation.description.min_new_tokens", "tokenizer", "keyboard",
    "secret_env", "token_file", "password_path", "keep_delivered_days", "monkey", "api.host",
])
def test_names_that_only_contain_a_secret_word_are_shown(name: str) -> None:
    assert not redact.secret_name(name)
    assert redact.value(name, SAMPLE) == SAMPLE


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql+psycopg://cc:hunter2@db:5432/cc?sslmode=require", "postgresql+psycopg://cc:***@db:5432/cc?sslmode=require"),
    ("postgresql://cc:p/a?s#s@db/cc", "postgresql://cc:***@db/cc"),
    ("postgresql://cc:hunter2@[::1/cc", "postgresql://cc:***@[::1/cc"),
    ("postgresql://cc:hun@ter2@db/cc", None),
    ("https://shop.example/hooks?token=abc123&shop=x", "https://shop.example/hooks?token=***&shop=x"),
    ("https://shop.example/hooks?api_key=abc123#frag", "https://shop.example/hooks?api_key=***#frag"),
    ("sqlite:////srv/catalogcap/catalogcap.db", "sqlite:////srv/catalogcap/catalogcap.db"),
])
def test_urls_lose_their_passwords_and_secret_query_values(url: str, shown: str | None) -> None:
    out = redact.url(url)
    for secret in ("hunter2", "p/a?s#s", "abc123", "hun@ter2", "ter2"):
        if secret in url:
            assert secret not in out, out
    if shown is not None:
        assert out == shown
    assert redact.text(f"could not connect to {url}: refused") == f"could not connect to {out}: refused"


def test_config_show_hides_database_passwords_and_webhook_tokens(home: Path, monkeypatch) -> None:
    (home / "catalogcap.toml").write_text(
        '[plugin_config.webhook]\nurls = ["https://shop.example/hook?token=T0kenV4lue&shop=a"]\n'
        '[plugin_config.shopify]\naccess_token = "shpat_123"\n')
    for bad in ("postgresql://cc:hunter2@[::1/cc", "postgresql://cc:pa/ss?w#rd@db/cc"):
        monkeypatch.setenv("CATALOGCAP_DATABASE_URL", bad)
        for args in (["config", "show", "--json"], ["config", "show"], ["status"]):
            result = CliRunner().invoke(cli, args)
            everything = result.output + result.stderr
            for secret in ("hunter2", "pa/ss?w#rd", "ss?w#rd", "T0kenV4lue", "shpat_123"):
                assert secret not in everything, (args, everything)
    monkeypatch.setenv("CATALOGCAP_DATABASE_URL", "postgresql://cc:pa/ss?w#rd@db/cc")
    shown = json.loads(CliRunner().invoke(cli, ["config", "show", "--json"]).stdout)
    assert shown["database_url"]["value"] == "postgresql://cc:***@db/cc"
    assert shown["plugin_config.webhook.urls"]["value"] == ["https://shop.example/hook?token=***&shop=a"]
    assert shown["plugin_config.shopify.access_token"]["value"] == "***"
    assert shown["generation.alt_text.max_new_tokens"]["value"] == 8


def test_init_writes_every_setting_commented_and_sources_stay_default(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "fresh"
    monkeypatch.setenv("CATALOGCAP_HOME", str(home))
    result = CliRunner().invoke(cli, ["init"])
    assert result.exit_code == 0, result.output
    text = (home / "catalogcap.toml").read_text()
    assert tomllib.loads(text) == {}  # everything is commented out
    for name, description in field_docs().items():
        leaf = name.rsplit(".", 1)[-1]
        assert f"# {leaf} = " in text, name
        assert description.split()[0] in text, name
    webhook = text[text.index("# [plugin_config.webhook]"):]
    assert "# timeout_seconds = 10.0" in webhook and '# secret_env = "CATALOGCAP_WEBHOOK_SECRET"' in webhook
    shown = json.loads(CliRunner().invoke(cli, ["config", "show", "--json"]).stdout)
    assert {entry["source"] for key, entry in shown.items() if key != "home"} == {"default"}


def test_each_line_of_the_template_uncommented_is_valid_and_the_default(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CATALOGCAP_HOME", str(tmp_path))
    template = config_template()  # the core settings (plugin sections are validated by the plugins)
    defaults = load_settings().model_dump(mode="json")
    section = ""
    for line in template.splitlines():
        if line.startswith("# [") and line.endswith("]"):
            section = line[3:-1]
            continue
        setting = re.match(r"^# ([a-z0-9_]+) = ", line)
        if setting is None or "(default: not set)" in line:
            continue
        name = setting.group(1)
        if name == "home":
            continue
        (tmp_path / "catalogcap.toml").write_text((f"[{section}]\n" if section else "") + line[2:] + "\n")
        settings = load_settings()
        dotted = f"{section}.{name}" if section else name
        node = defaults
        for part in dotted.split("."):
            node = node[part]
        value = settings.model_dump(mode="json")
        for part in dotted.split("."):
            value = value[part]
        assert value == node, dotted
        assert provenance(settings).get(dotted, "").startswith("file") or node == {}, dotted
