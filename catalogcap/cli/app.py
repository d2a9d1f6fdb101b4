"""What every command shares: the effective settings, the store, consoles, tables, JSON output.

Human output goes through `App.table` and `terminal.printable`: on a terminal a rich table, in a
pipe tab-separated lines that are never wrapped; either way control characters in the
data (a caption or file name carrying ESC sequences, CWE-150) are shown escaped, never
sent to the terminal. `--json` output is the data exactly.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

import click

from catalogcap.settings import Settings, load_settings
from catalogcap.terminal import printable

if TYPE_CHECKING:
    from rich.console import Console


class App:
    """Created once per invocation by the root group; settings load on first use so that
    `--help` and usage errors never touch the config file or the database."""

    def __init__(self, overrides: dict[str, Any]) -> None:
        self.overrides = overrides

    # The consoles are made on first use: rich is not imported by a command that prints JSON.
    # soft_wrap in a pipe: a long line stays one line (rich would wrap it at 80 columns)
    @cached_property
    def console(self) -> Console:
        from rich.console import Console

        return Console(highlight=False, soft_wrap=not sys.stdout.isatty())

    @cached_property
    def err(self) -> Console:
        from rich.console import Console

        return Console(stderr=True, highlight=False, soft_wrap=not sys.stderr.isatty())

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

    def table(self, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None,
              header: bool = True, right: Sequence[str] = (), sections: Iterable[int] = ()) -> None:
        """Rows as a rich table on a terminal, else as tab-separated lines (a header line first
        unless `header` is false) that use the full line; every cell is made `printable`."""
        rows = [[printable(cell, newlines=self.console.is_terminal) for cell in row] for row in rows]
        if not self.console.is_terminal:
            lines = ([list(columns)] if header else []) + rows
            click.echo("".join("\t".join(line) + "\n" for line in lines), nl=False)
            return
        from rich.table import Table
        from rich.text import Text

        table = Table(title=printable(title) if title else None, show_header=header)
        for name in columns:
            table.add_column(name, overflow="fold", justify="right" if name in right else "left")
        section_ends = set(sections)
        for index, row in enumerate(rows):
            table.add_row(*(Text(cell) for cell in row), end_section=index in section_ends)
        self.console.print(table)


def configure_logging(settings: Settings) -> None:
    from catalogcap.logs import setup

    setup(settings)


pass_app = click.make_pass_decorator(App)


def is_tty() -> bool:
    return sys.stderr.isatty()


logging.getLogger("alembic").setLevel(logging.WARNING)
