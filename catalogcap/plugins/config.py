"""Per-plugin settings: `[plugin_config.<section>]` validated by the model the plugin registers.

Values come from the same layers as every other setting (file, CATALOGCAP_PLUGIN_CONFIG__*
environment variables, `--set plugin_config.<section>.<key>=...`), plus the `-o KEY=VALUE`
options of one `catalogcap export` run on top.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError

from catalogcap import redact
from catalogcap.errors import SettingsError
from catalogcap.plugins.manager import PluginManager


def settings_models(pm: PluginManager) -> dict[str, tuple[type[BaseModel], str]]:
    """Section name -> (pydantic model, plugin that registered it)."""
    found: dict[str, tuple[type[BaseModel], str]] = {}
    for impl in reversed(pm.hook.register_settings.get_hookimpls()):
        def register(section: str, model: type[BaseModel], _plugin: str = impl.plugin_name) -> None:
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise TypeError(f"settings of section {section!r} must be a pydantic model class")
            found[section] = (model, _plugin)

        try:
            impl.function(register)
        except Exception as exc:
            pm.record_failure(impl.plugin_name, "register_settings", exc)
    return found


def _loads(value: Any) -> Any:
    """Environment and `-o` values arrive as text; pydantic reads numbers and booleans from
    text itself, so only JSON lists and tables need decoding."""
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def validate_section(model: type[BaseModel], section: str, raw: dict[str, Any]) -> BaseModel:
    """`raw` validated by `model`, or a SettingsError naming each bad `plugin_config.<section>.<key>`."""
    try:
        return model.model_validate({key: _loads(value) for key, value in raw.items()})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = ".".join(str(part) for part in ("plugin_config", section, *error["loc"]))
            if error["type"] == "extra_forbidden":
                known = ", ".join(model.model_fields)
                problems.append(f"unknown setting '{loc}' (known: {known})")
            else:
                shown = redact.value(loc, error.get("input"))  # a whole-table error carries every key
                problems.append(f"setting '{loc}' has bad value {shown!r}: {redact.text(error['msg'])}")
        raise SettingsError("; ".join(problems)) from None


def plugin_settings(pm: PluginManager, settings: Any, section: str,
                    overrides: dict[str, Any] | None = None) -> BaseModel | None:
    """The validated settings of `section` (None when no plugin registered it)."""
    models = settings_models(pm)
    if section not in models:
        return None
    raw = dict((getattr(settings, "plugin_config", None) or {}).get(section, {}))
    raw.update(overrides or {})
    return validate_section(models[section][0], section, raw)


def settings_docs(model: type[BaseModel]) -> list[dict[str, Any]]:
    """Each field of a settings model: name, default and description (for docs and `plugins list`)."""
    rows = []
    for name, info in model.model_fields.items():
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        rows.append({"name": name, "default": default, "description": info.description or ""})
    return rows
