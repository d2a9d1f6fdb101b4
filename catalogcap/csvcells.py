"""CSV cells a spreadsheet will not run as formulas (CWE-1236, OWASP's CSV injection rule).

A caption is text anyone with review rights (or a model) wrote; opened in Excel, LibreOffice
or Google Sheets, a cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return can be evaluated as a formula (``=HYPERLINK(...)``, ``+cmd|' /C calc'!A0``). Every
CSV catalogcap writes passes its text cells through `neutralise`, which puts a ``'`` in
front of such a cell; `restore` takes exactly one away again, so exporting and importing is
lossless. A cell that already starts with quotes before such a character gets one more, so
text that really begins with ``'=`` survives the round trip too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

TRIGGERS = "=+-@\t\r"
_NEUTRALISED = re.compile(r"^'+[=+\-@\t\r]")
_DANGEROUS = re.compile(r"^'*[=+\-@\t\r]")


def neutralise(value: Any) -> Any:
    """A text cell safe to open in a spreadsheet; other values (numbers, None) as they are."""
    if isinstance(value, str) and _DANGEROUS.match(value):
        return "'" + value
    return value


def restore(value: str) -> str:
    """The text `neutralise` was given: one leading quote fewer where it had added one."""
    return value[1:] if _NEUTRALISED.match(value) else value


def row(values: Iterable[Any]) -> list[Any]:
    """Every cell of a row neutralised."""
    return [neutralise(value) for value in values]
