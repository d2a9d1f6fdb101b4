from __future__ import annotations

from pathlib import Path

import pytest

from catalogcap.errors import SettingsError
from catalogcap.settings import DEFAULT_MODEL, load_settings, provenance


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALOGCAP_HOME", str(tmp_path))
    settings = load_settings()
    assert settings.model == DEFAULT_MODEL
    assert settings.alt_text_limit == 125
    assert settings.db_url == f"sqlite:///{tmp_path / 'catalogcap.db'}"
    assert settings.generation.description.prompt
    assert provenance(settings)["model"] == "default"
    assert provenance(settings)["home"] == "env CATALOGCAP_HOME"


def test_precedence_file_env_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "catalogcap.toml").write_text(
        'batch_size = 3\nalt_text_limit = 100\ndevice = "cpu"\n[generation.alt_text]\nnum_beams = 2\n'
    )
    monkeypatch.setenv("CATALOGCAP_HOME", str(tmp_path))
    monkeypatch.setenv("CATALOGCAP_BATCH_SIZE", "5")
    monkeypatch.setenv("CATALOGCAP_GENERATION__ALT_TEXT__NUM_BEAMS", "4")
    settings = load_settings({"alt_text_limit": 90})
    assert settings.batch_size == 5  # env beats file
    assert settings.alt_text_limit == 90  # command line beats file
    assert settings.device == "cpu"  # file beats default
    assert settings.generation.alt_text.num_beams == 4  # nested env
    assert settings.generation.description.num_beams == 4  # untouched default of the other kind
    where = provenance(settings)
    assert where["batch_size"] == "env CATALOGCAP_BATCH_SIZE"
    assert where["alt_text_limit"] == "command line"
    assert where["device"] == f"file {tmp_path / 'catalogcap.toml'}"
    assert where["generation.alt_text.num_beams"] == "env CATALOGCAP_GENERATION__ALT_TEXT__NUM_BEAMS"
    assert where["model"] == "default"


@pytest.mark.parametrize(
    ("env", "value", "needles"),
    [
        ("CATALOGCAP_DEVICE", "tpu", ["device", "'tpu'", "CATALOGCAP_DEVICE", "cpu", "cuda"]),
        ("CATALOGCAP_BATCH_SIZE", "0", ["batch_size", "'0'", "greater than or equal to 1"]),
        ("CATALOGCAP_GENERATION__ALT_TEXT__NUM_BEAMS", "many", ["generation.alt_text.num_beams", "'many'"]),
    ],
)
def test_bad_env_value_names_setting_value_and_allowed(tmp_path, monkeypatch, env, value, needles) -> None:
    monkeypatch.setenv("CATALOGCAP_HOME", str(tmp_path))
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    for needle in needles:
        assert needle in str(info.value)


def test_bad_file_value_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "catalogcap.toml").write_text("alt_text_limit = 5\n")
    monkeypatch.setenv("CATALOGCAP_HOME", str(tmp_path))
    with pytest.raises(SettingsError, match=r"alt_text_limit.*5.*catalogcap.toml"):
        load_settings()


def test_unknown_setting_and_broken_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALOGCAP_HOME", str(tmp_path))
    (tmp_path / "catalogcap.toml").write_text("batchsize = 3\n")
    with pytest.raises(SettingsError, match="unknown setting 'batchsize'"):
        load_settings()
    (tmp_path / "catalogcap.toml").write_text("batch_size = [\n")
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings()


def test_credentials_are_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from click.testing import CliRunner

    from catalogcap import redact
    from catalogcap.cli import cli

    assert redact.url("postgresql+psycopg://cc:S3cret@db:5432/cc") == "postgresql+psycopg://cc:***@db:5432/cc"
    assert redact.url("https://shop.example.com/h?token=1") == "https://shop.example.com/h?token=***"
    assert redact.value("plugin_config.webhook", {"secret": "hunter2", "urls": ["https://u:pw@h/x"]}) == {
        "secret": "***", "urls": ["https://u:***@h/x"]}
    assert redact.text("POST https://u:pw@h/x failed") == "POST https://u:***@h/x failed"

    (tmp_path / "catalogcap.toml").write_text('[plugin_config.someplugin]\napi_key = "k-123456"\n')
    monkeypatch.setenv("CATALOGCAP_HOME", str(tmp_path))
    monkeypatch.setenv("CATALOGCAP_DATABASE_URL", "postgresql+psycopg://cc:S3cretPW@db/cc")
    result = CliRunner().invoke(cli, ["config", "show", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["database_url"]["value"] == "postgresql+psycopg://cc:***@db/cc"
    assert "S3cretPW" not in result.output and "k-123456" not in result.output
    result = CliRunner().invoke(cli, ["config", "show"])
    assert "S3cretPW" not in result.output and "k-123456" not in result.output
    monkeypatch.setenv("CATALOGCAP_DATABASE_URL", "postgresql://cc:S3cretPW@db/cc")
    monkeypatch.setenv("CATALOGCAP_BATCH_SIZE", "0")
    with pytest.raises(SettingsError) as caught:
        load_settings({"database_url": ["postgresql://cc:S3cretPW@db/cc"]})
    assert "S3cretPW" not in str(caught.value)
