"""Human output of the CLI in a real pipe: one line per row (tab-separated, never wrapped at 80
columns), control characters escaped (CWE-150), `--json` exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from catalogcap.store.captions import save_model_captions
from catalogcap.store.database import write_session
from catalogcap.store.models import Asset, AssetPath, Job, utcnow

ROOT = Path(__file__).resolve().parents[1]
LONG_DIR = "/srv/catalog/" + "/".join(f"season-{i}-collection-with-a-long-folder-name" for i in range(4))
EVIL_TEXT = "red shirt \x1b]0;pwned\x07 \x1b[2J\x9b31m done"
EVIL_NAME = "evil-\x1b[31mred\x1b[0m.jpg"


def catalogcap(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CATALOGCAP_HOME": str(home), "COLUMNS": "80",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "catalogcap", *args], env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture
def store(home: Path, engine) -> Path:
    now = utcnow()
    with write_session(engine) as session:
        for i, (name, text) in enumerate([(f"{LONG_DIR}/product-{n:04d}-front-view.jpg", f"blue mug {n}")
                                          for n in range(3)] + [(f"/srv/catalog/{EVIL_NAME}", EVIL_TEXT)]):
            asset = Asset(fingerprint=f"{i:064x}", size=10, state="captioned", format="JPEG")
            session.add(asset)
            session.flush()
            session.add(AssetPath(asset_id=asset.id, path=name, size=10, mtime_ns=0))
            session.add(Job(asset_id=asset.id, state="failed", attempts=5, last_error=f"boom \x1b[2J {i}",
                            created_at=now, updated_at=now))
            save_model_captions(session, asset.id, {"alt_text": text, "description": f"a {text}"}, model="tiny",
                                adapter_id=None, generation={"alt_text": {}, "description": {}})
    return home


def test_piped_tables_are_tab_separated_lines_with_whole_paths(store: Path) -> None:
    listed = catalogcap("captions", "list", "--kind", "alt_text", home=store)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split("\t") == ["id", "kind", "state", "text", "path", "warnings"]
    assert len(lines) == 5  # a header and one line per caption, however long
    first = lines[1].split("\t")
    assert first[3] == "blue mug 0" and first[4] == f"{LONG_DIR}/product-0000-front-view.jpg"
    assert max(len(line) for line in lines) > 200

    config = catalogcap("config", "show", home=store)
    assert config.returncode == 0, config.stderr
    rows = {line.split("\t")[0]: line.split("\t") for line in config.stdout.splitlines()}
    assert rows["generation.description.max_new_tokens"][1:3] == [
        "12", "env CATALOGCAP_GENERATION__DESCRIPTION__MAX_NEW_TOKENS"]
    assert rows["alt_text_limit"][1:3] == ["125", "default"]
    assert all(len(row) == 4 for row in rows.values())

    stats = catalogcap("review", "stats", home=store)
    assert stats.returncode == 0, stats.stderr
    header, *body = stats.stdout.splitlines()
    assert header.split("\t")[0] == "adapter" and "edit distance" in header.split("\t")
    assert all(len(line.split("\t")) == 9 for line in body)
    assert "edit distance: characters changed" in stats.stderr  # the footnote stays out of the data

    jobs = catalogcap("jobs", "list", home=store)
    assert len(jobs.stdout.splitlines()) == 5 and LONG_DIR in jobs.stdout


def test_control_characters_are_escaped_in_human_output_and_exact_in_json(store: Path) -> None:
    evil_id = next(row["id"] for row in json.loads(catalogcap("captions", "list", "--json", home=store).stdout)
                   if row["text"] == EVIL_TEXT)
    for args in (["captions", "list"], ["captions", "show", str(evil_id)], ["jobs", "list"]):
        done = catalogcap(*args, home=store)
        assert done.returncode == 0, done.stderr
        assert "\x1b" not in done.stdout and "\x07" not in done.stdout and "\x9b" not in done.stdout, args
    shown = catalogcap("captions", "show", str(evil_id), home=store).stdout
    assert "red shirt \\x1b]0;pwned\\x07 \\x1b[2J\\x9b31m done" in shown
    assert "evil-\\x1b[31mred\\x1b[0m.jpg" in shown
    assert "boom \\x1b[2J" in catalogcap("jobs", "list", home=store).stdout
    exact = json.loads(catalogcap("captions", "show", str(evil_id), "--json", home=store).stdout)
    assert exact["text"] == EVIL_TEXT and exact["paths"][0]["path"] == f"/srv/catalog/{EVIL_NAME}"
    jobs = json.loads(catalogcap("jobs", "list", "--json", home=store).stdout)
    assert jobs[0]["path"] == f"/srv/catalog/{EVIL_NAME}" and jobs[0]["last_error"] == "boom \x1b[2J 3"


def test_a_terminal_table_escapes_too(store: Path, monkeypatch) -> None:
    from rich.console import Console

    from catalogcap.cli.app import App

    app = App({})
    app.console = Console(force_terminal=True, width=200, record=True, color_system=None)
    app.table(("id", "text"), [(1, EVIL_TEXT), (2, "[bold]not markup[/bold]\nsecond line")], title=EVIL_NAME)
    out = app.console.export_text()
    assert "\x1b" not in out and "\\x1b]0;pwned\\x07" in out
    assert "[bold]not markup[/bold]" in out and "second line" in out


def test_the_builtin_command_table_names_what_each_module_registers() -> None:
    """`BUILTIN_COMMANDS` (which module to import for a command) matches what the modules add."""
    import importlib

    import click

    from catalogcap.cli import BUILTIN_COMMANDS, _command_modules

    registered = {}
    for module in _command_modules():
        group = click.Group()
        importlib.import_module(f"catalogcap.cli.{module}").register(group)
        registered.update(dict.fromkeys(group.commands, module))
    assert registered == BUILTIN_COMMANDS


def test_status_and_captions_list_as_json_import_only_what_they_use(store: Path) -> None:
    """The read-only JSON commands start fast on a large store (benchmarks/store_scale.py): they
    import neither the other commands, nor the model, the review UI, the HTTP API, the migration
    tool, the plugins or rich."""
    heavy = {"torch", "transformers", "numpy", "PIL", "textual", "fastapi", "httpx", "alembic", "pluggy",
             "rich", "catalogcap_webhook", "catalogcap_xmp", "catalogcap_shopify"}
    probe = ("import json, sys\nfrom catalogcap.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
             "    pass\nsys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)))\n")
    env = {**os.environ, "CATALOGCAP_HOME": str(store),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for args in (["status", "--json"], ["captions", "list", "--json", "--limit", "2"]):
        done = subprocess.run([sys.executable, "-c", probe, *args], env=env, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)
        assert json.loads(done.stdout), done.stderr
        modules = set(json.loads(done.stderr.rsplit("\nMODULES ", 1)[1]))
        assert not {name.split(".")[0] for name in modules} & heavy, args
        commands = {name for name in modules if name.startswith("catalogcap.cli.")}
        assert commands == {"catalogcap.cli.app", f"catalogcap.cli.{'status' if args[0] == 'status' else 'captions'}"}


def test_plugin_commands_run_and_are_listed_from_the_command_line(home: Path) -> None:
    """Plugin commands are loaded on demand by `catalogcap`: run by name, listed by --help."""
    pytest.importorskip("catalogcap_webhook")
    listed = catalogcap("--help", home=home)
    assert listed.returncode == 0 and "webhook" in listed.stdout and "status" in listed.stdout, listed.stderr
    helped = catalogcap("webhook", "--help", home=home)
    assert helped.returncode == 0 and "deliver" in helped.stdout, helped.stderr
