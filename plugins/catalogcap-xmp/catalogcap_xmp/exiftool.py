"""Running exiftool: one process writes many files (tags from a JSON file), one reads them back.

Values travel in a JSON file, never on the command line, so any text (quotes, newlines,
a leading dash, emoji) arrives exactly; file names are absolute, so none reads as an option.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from catalogcap.errors import CatalogcapError

TIMEOUT_S = 600
INSTALL_HINT = "install it (Debian/Ubuntu: apt-get install libimage-exiftool-perl; macOS: brew install"\
               " exiftool)"
Tags = dict[str, str]


class ExiftoolError(CatalogcapError):
    """exiftool is missing, too old, or failed as a whole."""


def find(program: str) -> str:
    """The exiftool executable, or an error that says how to install it."""
    found = shutil.which(program)
    if not found:
        raise ExiftoolError(f"exiftool not found (looked for {program!r} on PATH); {INSTALL_HINT}")
    return found


def _run(exe: str, args: list[str]) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run([exe, *args], capture_output=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise ExiftoolError(f"exiftool took longer than {TIMEOUT_S}s on {len(args)} arguments; stopped"
                            ) from None
    except OSError as exc:
        raise ExiftoolError(f"cannot run exiftool {exe}: {exc}") from None


def write(exe: str, tags_by_file: dict[Path, Tags]) -> dict[Path, str]:
    """Write each file's tags in place (the files are our temporary copies); returns errors by file.

    A file that does not exist yet and ends in `.xmp` is created as a sidecar."""
    if not tags_by_file:
        return {}
    records = [{"SourceFile": str(path), **tags} for path, tags in tags_by_file.items()]
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".json", delete=False) as handle:
        json.dump(records, handle, ensure_ascii=False)
    try:
        result = _run(exe, ["-overwrite_original", "-m", "-charset", "filename=utf8", f"-json={handle.name}",
                            *[str(path) for path in tags_by_file]])
    finally:
        Path(handle.name).unlink(missing_ok=True)
    stderr = result.stderr.decode("utf-8", "replace")
    if "is not defined" in stderr or "doesn't exist or isn't writable" in stderr:
        raise ExiftoolError(f"exiftool {version(exe)} does not know the IPTC 2021 accessibility fields"
                            f" ({stderr.strip().splitlines()[0]}); install exiftool 12.30 or newer")
    return _errors_by_file(stderr, list(tags_by_file))


def _errors_by_file(stderr: str, paths: list[Path]) -> dict[Path, str]:
    errors: dict[Path, str] = {}
    for line in stderr.splitlines():
        if not line.startswith(("Error", "Warning")):
            continue
        for path in paths:
            if line.endswith(f" - {path}"):
                errors.setdefault(path, line[: -len(f" - {path}")])
    return errors


def read(exe: str, paths: list[Path], tags: list[str]) -> dict[Path, dict[str, str]]:
    """The named tags of each file, exactly as stored (numbers stay text: "1.50" is not 1.5)."""
    if not paths:
        return {}
    result = _run(exe, ["-json", "-G1", "-charset", "filename=utf8", *[f"-{tag}" for tag in tags],
                        *[str(path) for path in paths]])
    try:
        records = json.loads(result.stdout.decode("utf-8") or "[]", parse_float=str, parse_int=str)
    except ValueError as exc:
        raise ExiftoolError(f"exiftool printed something that is not JSON ({exc}):"
                            f" {result.stderr.decode('utf-8', 'replace')[:300]}") from None
    found: dict[Path, dict[str, str]] = {}
    for record in records:
        source = Path(record.pop("SourceFile"))
        found[source] = {key: value if isinstance(value, str) else json.dumps(value)
                         for key, value in record.items()}
    return found


def version(exe: str) -> str:
    result = _run(exe, ["-ver"])
    return result.stdout.decode("ascii", "replace").strip() or "?"
