"""`catalogcap init` and `catalogcap config show`."""

from __future__ import annotations

import json
import textwrap
from typing import Any, Literal, get_args, get_origin

import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

from catalogcap import redact
from catalogcap.cli.app import App, pass_app
from catalogcap.settings import CONFIG_NAME, Settings, field_docs, provenance

HEADER = """\
# catalogcap settings. Precedence: defaults < this file < CATALOGCAP_* environment
# variables (nested with __, e.g. CATALOGCAP_GENERATION__ALT_TEXT__NUM_BEAMS=1) < command
# line options. `catalogcap config show` prints every effective value and its source.
#
# Every setting is listed below, commented out, with its description and its default.
# To change one, remove the "# " in front of it (and in front of its [section] line).
"""


def _toml_value(value: Any) -> str:
    """A default as an inline TOML value (JSON strings, numbers, booleans and arrays are TOML too)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _setting_lines(name: str, info: FieldInfo) -> list[str]:
    lines = [f"# {line}" for line in textwrap.wrap(info.description or "", 86)]
    choices = get_args(info.annotation) if get_origin(info.annotation) is Literal else ()
    if choices:
        lines.append(f"# one of: {' | '.join(map(str, choices))}")
    if name == "home":
        lines.append("# (home is found from --home or CATALOGCAP_HOME; this file lives in it)")
    default = info.get_default(call_default_factory=True)
    if default is None:
        lines.append(f"# {name} = ...  (default: not set)")
    else:
        lines.append(f"# {name} = {_toml_value(to_jsonable_python(default))}")
    return lines


def config_template(model: type[BaseModel] = Settings, prefix: str = "", title: str = "",
                    plugins: dict[str, type[BaseModel]] | None = None) -> str:
    """The commented config file `init` writes: every setting, its description and its default,
    then the settings of each installed plugin (`plugins`: section -> model)."""
    plain: list[str] = []
    sections: list[str] = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            sections.append(config_template(annotation, f"{prefix}{name}.", info.description or ""))
        else:
            plain.append("\n".join(_setting_lines(name, info)) + "\n")
    out = HEADER if not prefix else ""
    if plain:
        if prefix:
            out += f"\n# ---- {prefix[:-1]}: {title}\n# [{prefix[:-1]}]\n"
        out += "\n" + "\n".join(plain)
    for section, plugin_model in sorted((plugins or {}).items()):
        sections.append(config_template(plugin_model, f"plugin_config.{section}.", f"the {section} plugin"))
    return out + "".join(sections)


def register(cli: click.Group) -> None:
    cli.add_command(init)
    cli.add_command(config)


@click.command()
@pass_app
def init(app: App) -> None:
    """Create the home folder, a commented config file and the database."""
    settings = app.settings
    home = settings.home
    for sub in ("", "adapters", "logs", "runs"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    config_file = home / CONFIG_NAME
    created = not config_file.exists()
    if created:
        config_file.write_text(config_template(plugins=_plugin_settings(settings)), encoding="utf-8")
    from catalogcap.store.database import current_revision

    revision = current_revision(app.engine)
    app.console.print(f"home      {home}")
    app.console.print(f"config    {config_file}{' (created)' if created else ' (kept)'}")
    app.console.print(f"database  {redact.database_url(settings.db_url)} (schema {revision})")
    app.console.print(f"model     {settings.model}")
    from catalogcap.captioner.model import resolve_model
    from catalogcap.errors import ModelLoadError

    try:
        resolve_model(settings.model, settings.model_revision)
    except ModelLoadError as exc:  # init still succeeds: the model can be fixed before the first scan
        from rich.markup import escape

        app.err.print(f"[yellow]warning[/yellow]: {escape(str(exc))}", soft_wrap=True)


def _plugin_settings(settings: Settings) -> dict[str, type[BaseModel]]:
    """Section -> settings model of every plugin allowed to load."""
    from catalogcap.plugins.config import settings_models
    from catalogcap.plugins.manager import make_manager

    return {section: model for section, (model, _plugin) in settings_models(make_manager(settings.plugins)).items()}


@click.group()
def config() -> None:
    """Inspect the effective settings."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: {setting: {value, source}}.")
@pass_app
def config_show(app: App, as_json: bool) -> None:
    """Print every setting, its effective value and where it came from."""
    from catalogcap.settings import _flatten

    settings = app.settings
    values = {key: redact.value(key, value) for key, value in _flatten(settings.model_dump(mode="json")).items()}
    sources = provenance(settings)
    docs = field_docs()
    if as_json:
        app.json({key: {"value": value, "source": sources.get(key, "default")} for key, value in values.items()})
        return
    profiles = values.pop("profiles", [])
    app.table(("setting", "value", "source", "description"),
              [(key, repr(value) if isinstance(value, str) else str(value), sources.get(key, "default"),
                docs.get(key, "")) for key, value in values.items()],
              title=f"catalogcap settings (home {settings.home})")
    if profiles:
        app.table(("profile", "folders", "overrides"), [
            (p.name, ", ".join(p.folders), "; ".join(
                [f"generation.{kind}.{key} = {value!r}" for kind, over in p.generation.items()
                 for key, value in over.items()]
                + ([f"alt_text_limit = {p.alt_text_limit}"] if p.alt_text_limit is not None else [])) or "-")
            for p in settings.profiles], title=f"profiles (first match wins; from {sources.get('profiles')})")
