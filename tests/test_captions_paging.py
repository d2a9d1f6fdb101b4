"""`captions list` a page at a time at any catalog size: --limit, --after, and --all streamed."""

from __future__ import annotations

import json

from click.testing import CliRunner

from catalogcap.cli import cli
from tests.factories import add_captions


def _run(*args: str):
    result = CliRunner().invoke(cli, ["captions", "list", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_pages_follow_each_other_and_all_streams_everything(home, engine) -> None:
    add_captions(engine, 7)  # 14 captions, both kinds
    every = json.loads(_run("--all", "--json").stdout)
    assert len(every) == 14 and [c["id"] for c in every] == sorted(c["id"] for c in every)
    first = _run("--limit", "5", "--json")
    page = json.loads(first.stdout)
    assert [c["id"] for c in page] == [c["id"] for c in every[:5]]
    assert f"--after {page[-1]['id']}" in first.stderr
    second = json.loads(_run("--limit", "5", "--after", str(page[-1]["id"]), "--json").stdout)
    assert [c["id"] for c in second] == [c["id"] for c in every[5:10]]
    last = _run("--limit", "5", "--after", str(every[9]["id"]), "--json")
    assert [c["id"] for c in json.loads(last.stdout)] == [c["id"] for c in every[10:]]
    assert "more captions follow" not in last.stderr
    assert json.loads(_run("--all", "--json", "--kind", "alt_text").stdout) == [
        c for c in every if c["kind"] == "alt_text"]
    assert json.loads(_run("--all", "--json", "--after", str(every[-1]["id"])).stdout) == []
    assert len(json.loads(_run("--json").stdout)) == 14  # under a page: all of them, nothing said
    table = _run("--limit", "3")
    assert len(table.stdout.splitlines()) == 4  # header and a page of three, piped as TSV
    assert f"--after {every[2]['id']} for the next page" in table.stderr
