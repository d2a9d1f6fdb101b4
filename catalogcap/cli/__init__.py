"""The `catalogcap` command line: a click group; each command group lives in its own module.

Exit codes: 0 success, 1 an error the user can fix (one message on stderr, no
traceback), 2 usage error.
"""

from __future__ import annotations

import errno
import importlib
import sqlite3
import sys
from typing import Any

import click
import sqlalchemy as sa

from catalogcap.cli.app import App
from catalogcap.errors import CatalogcapError


def _parse_set(values: tuple[str, ...]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE (e.g. generation.alt_text.num_beams=1)",
                                     param_hint="--set")
        parsed[key.strip()] = value
    return parsed


# Each built-in command (or group) and the module of this package whose `register(cli)` adds
# it. A command is imported only when it is run, so `status` or `captions list` does not
# pay for the imports of the others (the model, the review UI, the HTTP API...); a test
# checks this table against what each module registers.
BUILTIN_COMMANDS = {
    "adapters": "train", "backfill": "backfill", "caption": "scan", "captions": "captions", "config": "setup",
    "demo": "demo", "export": "plugins", "init": "setup", "jobs": "status", "plugins": "plugins",
    "products": "products", "recaption": "train", "review": "review", "scan": "scan", "serve": "api",
    "status": "status", "tokens": "api", "train": "train", "watch": "watch", "worker": "worker",
}


class CatalogcapGroup(click.Group):
    """Turns user-fixable errors into one line on stderr and exit code 1. Built-in commands are
    imported on first use; plugin commands are loaded only when asked for (`load_plugins`, set by
    `main`) and a name is no built-in one, or when every command is listed (`--help`)."""

    load_plugins = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._registered: set[str] = set()
        self._plugins_added = False

    def _register(self, module: str) -> None:
        if module not in self._registered:
            self._registered.add(module)
            importlib.import_module(f"catalogcap.cli.{module}").register(self)

    def _add_plugins(self) -> None:
        if self.load_plugins and not self._plugins_added:
            self._plugins_added = True
            add_plugin_commands(self)
            for module in self._registered:  # a plugin's command never replaces a built-in one
                importlib.import_module(f"catalogcap.cli.{module}").register(self)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in BUILTIN_COMMANDS:
            self._register(BUILTIN_COMMANDS[cmd_name])
        elif cmd_name not in self.commands:
            self._add_plugins()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugins()
        for module in sorted(set(BUILTIN_COMMANDS.values())):
            self._register(module)  # after the plugins: a built-in name stays the built-in command
        return super().list_commands(ctx)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CatalogcapError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except OSError as exc:  # a folder that cannot be created, a full disk, a permission: fixable
            if exc.filename is None and exc.errno != errno.ENOSPC:
                raise
            where = "" if exc.filename is None else (
                f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "") + ": ")
            click.echo(f"error: {where}{exc.strerror or exc}", err=True)
            ctx.exit(1)
        except (sa.exc.DBAPIError, sqlite3.Error) as exc:  # a damaged file, a full disk, a lock held too long
            from catalogcap.store.database import store_error

            app = ctx.obj
            url = app.settings.db_url if isinstance(app, App) and "settings" in app.__dict__ else None
            known = store_error(exc, url)
            if known is None:
                raise
            click.echo(f"error: {known}", err=True)
            ctx.exit(1)


@click.group(cls=CatalogcapGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--home", type=click.Path(file_okay=False), help="Data folder (default: $CATALOGCAP_HOME).")
@click.option("--model", help="BLIP model: hub id or local folder (default: $CATALOGCAP_MODEL).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), help="Where the model runs.")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), help="Model precision.")
@click.option("--batch-size", type=int, help="Images per model call.")
@click.option("--database-url", help="SQLAlchemy URL of the store (default: SQLite in home).")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option("--set", "set_", multiple=True, metavar="KEY=VALUE", help="Any setting by dotted name; repeatable.")
@click.version_option(package_name="catalogcap")
@click.pass_context
def cli(ctx: click.Context, home, model, device, dtype, batch_size, database_url, log_level, set_) -> None:
    """catalogcap: alt text and product descriptions for image catalogs, improving nightly from reviews."""
    overrides: dict[str, Any] = _parse_set(set_)
    options = dict(home=home, model=model, device=device, dtype=dtype, batch_size=batch_size,
                   database_url=database_url, log_level=log_level.upper() if log_level else None)
    overrides.update({key: value for key, value in options.items() if value is not None})
    ctx.obj = App(overrides)


def _command_modules() -> list[str]:
    """Every module of this package that defines `register(cli)`: one per command group."""
    import pkgutil

    return sorted(info.name for info in pkgutil.iter_modules(__path__) if info.name != "app")


def add_plugin_commands(group: click.Group) -> None:
    """Let installed plugins add commands (`register_commands` hook); a broken one is logged."""
    from catalogcap.plugins.manager import make_manager
    from catalogcap.settings import load_settings

    try:
        enabled = load_settings().plugins
    except CatalogcapError:
        enabled = None  # the command itself will report the bad setting
    make_manager(enabled).call("register_commands", cli=group)


def main(argv: list[str] | None = None) -> None:
    cli.load_plugins = True  # plugin commands on demand: a built-in command does not load the plugins
    cli.main(args=argv, prog_name="catalogcap")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
