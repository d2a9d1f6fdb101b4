"""Text from the catalog made safe to show on a terminal (CWE-150).

Captions, file names and error texts come from outside: a caption or a file name holding
ESC sequences (``\\e]0;title\\a``, ``\\e[2J``) would retitle, clear or rewrite the reader's
terminal if printed raw. Everything shown to people passes through `printable`; JSON output
keeps the exact text.
"""

from __future__ import annotations

import re
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def printable(value: Any, *, newlines: bool = False) -> str:
    """`value` as text safe to print: C0 and C1 control characters (ESC, BEL, CSI...) written
    as escapes such as \\x1b; with `newlines`, line breaks are kept as they are."""

    def escape(match: re.Match[str]) -> str:
        char = match.group(0)
        if newlines and char == "\n":
            return char
        return _NAMED.get(char) or f"\\x{ord(char):02x}"

    return _CONTROL.sub(escape, "" if value is None else str(value))
