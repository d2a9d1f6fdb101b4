"""The plugin mechanism: loading through entry points, the allow-list, isolation of failing
plugins, `plugins list`, `export` with the built-in exporters, safe paths, and the docs."""

from __future__ import annotations

import ast
import csv
import io
import json
import logging
import os
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from catalogcap.cli import add_plugin_commands, cli
from catalogcap.errors import PathOutsideRoot
from catalogcap.plugins import Hooks, hookspecs, plugin_failures
from catalogcap.plugins.config import settings_models
from catalogcap.plugins.exporters import safe_join, write_atomic
from catalogcap.plugins.manager import exporters, make_manager
from tests.conftest import ROOT, make_image
from tests.plugin_support import add_image, add_reviewed, review

DEMO_PLUGIN = '''
from catalogcap.plugins import hookimpl

seen = []


@hookimpl
def caption_reviewed(caption, decision):
    raise RuntimeError(f"demo cannot handle caption {caption.id}")


@hookimpl
def register_exporters(register):
    register("upper", lambda events, dest, options: {"texts": [e.text.upper() for e in events]}, "Shouting.")
'''
LISTENER_PLUGIN = '''
from catalogcap.plugins import hookimpl

seen = []


@hookimpl
def caption_reviewed(caption, decision, settings):
    seen.append((caption.id, caption.state, decision, settings is not None))
'''


def run(*args: str, code: int = 0) -> str:
    """Stdout and stderr of one command, which must exit with `code`."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def run_json(*args: str):
    result = CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def demo_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three installed distributions with `catalogcap` entry points: one raises, one listens, one is broken."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "cc_demo_plugin.py").write_text(DEMO_PLUGIN)
    (site / "cc_listener_plugin.py").write_text(LISTENER_PLUGIN)
    for dist, version, entries in (("cc-demo", "1.2.3", "demo = cc_demo_plugin\nbroken = cc_no_such_module\n"),
                                   ("cc-listener", "0.4", "listener = cc_listener_plugin\n")):
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[catalogcap]\n{entries}")
    monkeypatch.syspath_prepend(str(site))
    yield site
    for name in ("cc_demo_plugin", "cc_listener_plugin"):
        sys.modules.pop(name, None)


def test_builtin_exporters_register_through_the_hook() -> None:
    pm = make_manager(["builtin"])
    found = exporters(pm)
    assert {"jsonl", "csv"} <= set(found)
    assert found["jsonl"].plugin == "builtin"
    assert make_manager([]).list_name_plugin() == []


def test_plugins_list_shows_versions_hooks_and_what_did_not_load(home: Path, demo_site: Path) -> None:
    items = {item["name"]: item for item in run_json("plugins", "list")}
    assert items["builtin"]["builtin"] and items["builtin"]["exporters"] == ["csv", "jsonl"]
    assert items["demo"]["package"] == "cc-demo" and items["demo"]["version"] == "1.2.3"
    assert items["demo"]["hooks"] == ["caption_reviewed", "register_exporters"]
    assert items["demo"]["exporters"] == ["upper"]
    assert items["broken"]["status"] == "broken" and "cc_no_such_module" in items["broken"]["error"]
    for shipped in ("xmp", "shopify", "webhook"):
        assert items[shipped]["status"] == "loaded", f"pip install -e plugins/catalogcap-{shipped}"
    assert items["webhook"]["settings"]["webhook"][0]["name"] == "urls"
    table = run("plugins", "list")
    assert "demo" in table and "1.2.3" in table


def test_the_plugins_setting_limits_what_loads(home: Path, demo_site: Path) -> None:
    (home / "catalogcap.toml").write_text('plugins = ["builtin", "listener"]\n')
    items = {item["name"]: item["status"] for item in run_json("plugins", "list")}
    assert items["builtin"] == items["listener"] == "loaded"
    assert items["demo"] == "disabled" and items["xmp"] == "disabled"
    assert "broken" not in items or items["broken"] == "disabled"
    out = run("export", "xmp", code=1)
    assert "no exporter 'xmp'" in out and "csv, jsonl" in out


def test_a_raising_plugin_is_logged_counted_recorded_and_never_stops_the_caller(
        engine, settings, demo_site: Path, photos: Path, caplog: pytest.LogCaptureFixture) -> None:
    ids = add_image(engine, photos / "red-shirt.jpg")
    review(engine, ids["alt_text"], "accept")
    hooks = Hooks(engine, settings=settings)
    with caplog.at_level(logging.ERROR, logger="catalogcap.plugins"):
        hooks.captions_reviewed([ids["alt_text"]], "accept")
        hooks.captions_reviewed([ids["alt_text"]], "accept")
    assert f"plugin demo failed in caption_reviewed: RuntimeError: demo cannot handle caption {ids['alt_text']}" \
        in caplog.text
    import cc_listener_plugin

    assert cc_listener_plugin.seen == [(ids["alt_text"], "accepted", "accept", True)] * 2  # the next plugin ran
    recorded = plugin_failures(engine)["demo"]
    assert recorded["count"] == 2 and "demo cannot handle" in recorded["last_error"]
    listed = {item["name"]: item for item in run_json("plugins", "list")}
    assert listed["demo"]["failures_recorded"] == 2


def test_the_cli_review_path_survives_a_raising_plugin(home: Path, engine, demo_site: Path, photos: Path) -> None:
    ids = add_image(engine, photos / "blue-mug.png")
    out = run("captions", "accept", str(ids["alt_text"]))
    assert "accepted" in out
    assert plugin_failures(engine)["demo"]["count"] == 1


def test_a_slow_hook_is_named_in_a_warning(engine, settings, photos: Path, caplog: pytest.LogCaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from catalogcap.plugins import manager

    class Slow:
        @hookspecs.hookimpl
        def caption_created(self, caption):
            time.sleep(0.05)

    monkeypatch.setattr(manager, "SLOW_SECONDS", 0.01)
    ids = add_image(engine, photos / "red-shirt.jpg")
    hooks = Hooks(engine, ["builtin"], settings=settings)
    hooks.pm.register(Slow(), name="slow")
    with caplog.at_level(logging.WARNING, logger="catalogcap.plugins"):
        hooks.captions_created([ids["alt_text"]])
    assert "plugin slow took" in caplog.text and "caption_created" in caplog.text


def test_export_jsonl_and_csv_of_reviewed_captions(home: Path, engine, photos: Path, tmp_path: Path) -> None:
    add_reviewed(engine, photos / "red-shirt.jpg", 'Red "crew" shirt, cotton', "A red shirt.\nSecond line.")
    add_image(engine, photos / "blue-mug.png")  # pending: not exported by default
    out = tmp_path / "exports" / "captions.jsonl"
    report = run_json("export", "--format", "jsonl", "--out", str(out))
    assert report == {"written": 2, "dest": str(out)}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["kind"], r["state"], r["text"]) for r in rows] == [
        ("alt_text", "edited", 'Red "crew" shirt, cotton'), ("description", "edited", "A red shirt.\nSecond line.")]
    assert rows[0]["path"] == str(photos / "red-shirt.jpg")
    text = CliRunner().invoke(cli, ["export", "csv", "--state", "pending", "--kind", "alt_text"]).stdout
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert [(r["kind"], r["text"]) for r in parsed] == [("alt_text", "model alt of blue-mug")]
    assert [p.name for p in out.parent.iterdir()] == ["captions.jsonl"]  # no temporary file left


def test_export_usage_errors_are_clear(home: Path, engine) -> None:
    assert "name the exporter" in run("export", code=2)
    assert "disagree" in run("export", "csv", "--format", "jsonl", code=2)
    assert "use states from" in run("export", "csv", "--state", "accepted,bogus", code=2)
    out = run("export", "nope", code=1)
    assert "no exporter 'nope'" in out and "jsonl" in out
    out = run("export", "xmp", "-o", "mode=inline", code=1)
    assert "plugin_config.xmp.mode" in out and "'inline'" in out
    out = run("export", "xmp", "-o", "colour=red", code=1)
    assert "unknown setting 'plugin_config.xmp.colour'" in out and "sidecar_name" in out
    assert "is not KEY=VALUE" in run("export", "csv", "-o", "novalue", code=2)


def test_plugin_settings_come_from_the_config_file_and_the_command_line(home: Path, engine, photos: Path) -> None:
    (home / "catalogcap.toml").write_text('[plugin_config.xmp]\nmode = "embed"\nbatch_size = "many"\n')
    out = run("export", "xmp", code=1)
    assert "plugin_config.xmp.batch_size" in out and "'many'" in out
    run_json("export", "xmp", "-o", "batch_size=5")  # the command line wins; nothing reviewed yet


def test_safe_join_keeps_names_inside_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "out"
    root.mkdir()
    assert safe_join(root, "a/b.xmp") == root.resolve() / "a" / "b.xmp"
    for bad in ("../escape.xmp", "a/../../escape.xmp", "/etc/passwd", ""):
        with pytest.raises(PathOutsideRoot):
            safe_join(root, bad)
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(PathOutsideRoot, match="outside"):
        safe_join(root, "link/escape.xmp")


def test_write_atomic_keeps_the_mode_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "report.csv"
    target.write_text("old")
    os.chmod(target, 0o640)
    write_atomic(target, "new")
    assert target.read_text() == "new" and (target.stat().st_mode & 0o777) == 0o640
    assert os.listdir(tmp_path) == ["report.csv"]


def test_plugin_commands_are_added_to_the_cli(home: Path) -> None:
    add_plugin_commands(cli)
    assert "deliver" in run("webhook", "--help")


# -- documentation: a hook or a setting without docs fails the build ----------------------------

README = ROOT / "plugins" / "README.md"


def _hookspecs() -> dict[str, ast.FunctionDef]:
    tree = ast.parse(Path(hookspecs.__file__).read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)
            and any(isinstance(d, ast.Name) and d.id == "hookspec" for d in node.decorator_list)}


def test_every_hook_has_a_one_line_docstring_and_is_in_the_plugins_readme() -> None:
    specs = _hookspecs()
    assert {"register_exporters", "register_commands", "caption_created", "caption_reviewed",
            "adapter_promoted"} <= set(specs)
    readme = README.read_text()
    for name, node in specs.items():
        doc = ast.get_docstring(node)
        assert doc and "\n" not in doc, f"hook {name} needs a one-line docstring"
        args = ", ".join(a.arg for a in node.args.args)
        assert f"{name}({args})" in readme, f"hook {name}({args}) is not documented in {README}"


def test_every_plugin_setting_has_a_description_and_is_in_its_readme() -> None:
    pm = make_manager()
    models = settings_models(pm)
    assert {"xmp", "shopify", "webhook"} <= set(models)
    for section, (model, _plugin) in models.items():
        readme = (ROOT / "plugins" / f"catalogcap-{section}" / "README.md").read_text()
        assert f"[plugin_config.{section}]" in readme
        for name, info in model.model_fields.items():
            assert info.description, f"plugin_config.{section}.{name} has no description"
            assert re.search(rf"^\|\s*`{name}`", readme, re.MULTILINE), \
                f"plugin_config.{section}.{name} is not in the settings table of catalogcap-{section}/README.md"
    readme = README.read_text()
    for core in ("`plugins`", "`plugin_config`"):
        assert core in readme, f"core setting {core} is not explained in {README}"


def test_the_readme_template_plugin_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine,
                                          photos: Path) -> None:
    """The one-file plugin shown in plugins/README.md loads and exports as documented."""
    text = README.read_text()
    source = re.search(r"```python\n# catalogcap_shout\.py\n(.*?)```", text, re.DOTALL)
    assert source, "plugins/README.md lost its catalogcap_shout.py example"
    (tmp_path / "catalogcap_shout.py").write_text(source.group(1))
    monkeypatch.syspath_prepend(str(tmp_path))
    import catalogcap_shout

    pm = make_manager([])
    pm.register(catalogcap_shout, name="shout")
    add_reviewed(engine, make_image(photos / "hat.jpg"), "a straw hat")
    from catalogcap.plugins.events import select_caption_events
    from catalogcap.store.database import read_session

    with read_session(engine) as session:
        events = select_caption_events(session, kinds=["alt_text"])
    out = tmp_path / "shout.txt"
    report = exporters(pm)["shout"].fn(events, out, {})
    assert report["written"] == 1 and out.read_text() == "A STRAW HAT\n"
    sys.modules.pop("catalogcap_shout", None)
