"""API tokens: stored hashed, verified, revoked; the `tokens` commands; the api settings; migration 0003."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from catalogcap.api.tokens import SCOPES, create_token, list_tokens, parse_id, revoke_token, scope_allows, verify_token
from catalogcap.errors import CatalogcapError, NotFound, SettingsError
from catalogcap.store.database import create_store_engine, current_revision, head_revision, upgrade
from catalogcap.store.models import utcnow


def test_only_the_hash_is_stored(engine, settings) -> None:
    new = create_token(engine, "shop", "review")
    assert new.secret.startswith(f"ccap_{new.token.id}_")
    assert new.token.token_hash == hashlib.sha256(new.secret.encode()).hexdigest()
    raw = Path(settings.home / "catalogcap.db").read_bytes()
    for wal in settings.home.glob("catalogcap.db-wal"):
        raw += wal.read_bytes()
    assert new.secret.encode() not in raw
    assert new.secret.rsplit("_", 1)[-1].encode() not in raw


def test_verify_accepts_only_the_live_exact_token(engine) -> None:
    new = create_token(engine, "dam", "read")
    assert verify_token(engine, new.secret).id == new.token.id
    forged = new.secret[:-1] + ("A" if new.secret[-1] != "A" else "B")
    assert verify_token(engine, forged) is None
    assert verify_token(engine, "ccap_000000000000_nothing") is None
    assert verify_token(engine, "not a token") is None
    assert verify_token(engine, "") is None
    revoke_token(engine, new.token.id)
    assert verify_token(engine, new.secret) is None


def test_last_used_is_recorded_at_most_once_a_minute(engine) -> None:
    new = create_token(engine, "pim", "read")
    now = utcnow()
    verify_token(engine, new.secret, now=now)
    verify_token(engine, new.secret, now=now + timedelta(seconds=30))
    assert list_tokens(engine)[0].last_used_at == now
    verify_token(engine, new.secret, now=now + timedelta(minutes=2))
    assert list_tokens(engine)[0].last_used_at == now + timedelta(minutes=2)


def test_scopes_are_ordered() -> None:
    assert SCOPES == ("read", "review", "admin")
    assert scope_allows("admin", "read") and scope_allows("review", "review")
    assert not scope_allows("read", "review") and not scope_allows("review", "admin")


def test_bad_names_scopes_and_revocations(engine) -> None:
    with pytest.raises(CatalogcapError, match="scope"):
        create_token(engine, "x", "root")
    with pytest.raises(CatalogcapError, match="name"):
        create_token(engine, "  ", "read")
    create_token(engine, "twin", "read")
    create_token(engine, "twin", "read")
    with pytest.raises(CatalogcapError, match="revoke by id"):
        revoke_token(engine, "twin")
    with pytest.raises(NotFound):
        revoke_token(engine, "nobody")
    assert parse_id("ccap_0123456789ab_secret") == "0123456789ab"
    assert parse_id("ccap_0123456789AB_secret") is None


def test_tokens_commands(home: Path) -> None:
    from catalogcap.cli import cli

    runner = CliRunner()
    created = runner.invoke(cli, ["tokens", "create", "--name", "shop", "--scope", "review", "--json"])
    assert created.exit_code == 0, created.output
    token = json.loads(created.output)
    assert token["scope"] == "review" and token["token"].startswith("ccap_")
    plain = runner.invoke(cli, ["tokens", "create", "--name", "feed"])
    assert plain.exit_code == 0 and plain.stdout.strip().startswith("ccap_")
    listed = runner.invoke(cli, ["tokens", "list", "--json"])
    rows = json.loads(listed.output)
    assert {r["name"] for r in rows} == {"shop", "feed"}
    assert token["token"] not in listed.output and all("token" not in r and "token_hash" not in r for r in rows)
    revoked = runner.invoke(cli, ["tokens", "revoke", "shop"])
    assert revoked.exit_code == 0 and token["id"] in revoked.output
    again = json.loads(runner.invoke(cli, ["tokens", "list", "--json"]).output)
    assert next(r for r in again if r["name"] == "shop")["revoked_at"] is not None
    missing = runner.invoke(cli, ["tokens", "revoke", "nobody"])
    assert missing.exit_code == 1 and "tokens list" in missing.output
    bad = runner.invoke(cli, ["tokens", "create", "--name", "x", "--scope", "root"])
    assert bad.exit_code == 2


def test_api_settings_stay_inside_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from catalogcap.settings import load_settings

    settings = load_settings({"api.roots": ["relative/folder"]})
    assert settings.api.host == "127.0.0.1" and settings.api.roots[0].is_absolute()
    monkeypatch.setenv("CATALOGCAP_API__UPLOAD_FOLDER", "../outside")
    with pytest.raises(SettingsError, match=r"api\.upload_folder.*'\.\./outside'"):
        load_settings()


def test_migration_0003_upgrades_and_downgrades_in_place(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = create_store_engine(url, migrate=False)
    upgrade(engine, "0002")
    assert "api_tokens" not in sa.inspect(engine).get_table_names()
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    inspector = sa.inspect(engine)
    assert "api_tokens" in inspector.get_table_names()
    assert "ix_captions_updated_at_id" in {ix["name"] for ix in inspector.get_indexes("captions")}
    from alembic import command

    from catalogcap.store.database import _alembic_config

    command.downgrade(_alembic_config(engine), "0002")
    assert "api_tokens" not in sa.inspect(engine).get_table_names()
    engine.dispose()
