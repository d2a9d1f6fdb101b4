"""`catalogcap serve` when it cannot listen: one line on stderr, exit 1, nothing printed before it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def serve(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CATALOGCAP_HOME": str(home),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "catalogcap", "serve", "--no-worker", *args], env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def assert_one_line(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot listen on "), done.stderr
    assert "catalogcap API on" not in done.stderr and "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_a_busy_port_is_one_line_and_exit_1(home: Path, engine) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = serve(home, "--port", str(port))
    assert_one_line(done, f"127.0.0.1:{port}", "another program is listening there", "--port")


@pytest.mark.parametrize(("host", "needle"), [
    ("192.0.2.123", "not one of this machine's"),  # TEST-NET-1: never a local address
    ("no-such-host.invalid", "--host"),
])
def test_any_other_bind_error_is_one_line_and_exit_1(home: Path, engine, host: str, needle: str) -> None:
    assert_one_line(serve(home, "--host", host, "--port", "8765"), host, needle)
