"""What every command shares: the effective settings, the store, consoles, JSON output."""

from __future__ import annotations

import json
import logging
import sys
from functools import cached_property
from typing import Any

import click
from rich.console import Console

from catalogcap.settings import Settings, load_settings


class App:
    """Created once per invocation by the root group; settings load on first use so that
    `--help` and usage errors never touch the config file or the database."""

    def __init__(self, overrides: dict[str, Any]) -> None:
        self.overrides = overrides
        self.console = Console(highlight=False)
        self.err = Console(stderr=True, highlight=False)

    @cached_property
    def settings(self) -> Settings:
        settings = load_settings(self.overrides)
        configure_logging(settings)
        return settings

    @cached_property
    def engine(self):
        from catalogcap.store.database import create_store_engine

        return create_store_engine(self.settings.db_url)

    def json(self, data: Any) -> None:
        """Machine-readable output: one JSON document on stdout, nothing else."""
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def configure_logging(settings: Settings) -> None:
    from catalogcap.logs import setup

    setup(settings)


pass_app = click.make_pass_decorator(App)


def is_tty() -> bool:
    return sys.stderr.isatty()


logging.getLogger("alembic").setLevel(logging.WARNING)
