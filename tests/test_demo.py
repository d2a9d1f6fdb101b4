"""The demo end to end, shortened: watch, caption, review, train, promote, fresh captions."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from catalogcap.cli import cli


def test_short_demo_promotes_and_improves(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--images", "160", "--fresh", "4",
                                      "--dir", str(tmp_path / "demo"), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["captioned"] == 160
    assert summary["round"]["promoted"] is True
    assert summary["after"]["CIDEr"] > summary["before"]["CIDEr"] + 0.5
    fresh = summary["fresh"]
    assert len(fresh) == 4 and all(item["adapter_id"] == summary["round"]["adapter"] for item in fresh)
    assert sum("background" in item["base"].lower() for item in fresh) >= 3
    assert sum("background" not in item["adapter"].lower() for item in fresh) >= 3
    assert "catalogcap review" in result.stderr
