"""The store's read paths at catalog scale: `captions list --json` and `status --json` on a
store of N captions (default 1,000,000: 500,000 images with both kinds).

    python benchmarks/store_scale.py [--captions 1000000] [--repeat 5] [--json]

Builds a temporary SQLite store in bulk (assets, paths, jobs, captions in mixed states), then
times, in this process, the data each command reads (`list_captions` of the first page and
`store_status`), and, as a user runs them, the commands themselves (a fresh `python -m
catalogcap` process: interpreter start and imports included), each `--repeat` times, the
median reported. Beside them: the bare interpreter's start and `status --help` (the status
command's imports, no store), the floor under both commands. catalogcap's bytecode is compiled
first, as an install does (`pip install` byte-compiles; PYTHONDONTWRITEBYTECODE=1 would
otherwise make every run compile its sources again). Target: each command under 1 s at
1,000,000 captions. Not a test.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def build(url: str, captions: int) -> None:
    import sqlalchemy as sa

    from catalogcap.store.database import create_store_engine
    from catalogcap.store.models import Asset, AssetPath, Caption, Job, utcnow

    engine = create_store_engine(url)
    now = utcnow()
    images = captions // 2
    states = ("pending", "pending", "accepted", "edited", "rejected")
    chunk = 20_000
    with engine.begin() as conn:
        for start in range(0, images, chunk):
            ids = range(start + 1, min(start + chunk, images) + 1)
            conn.execute(sa.insert(Asset), [{"id": i, "fingerprint": f"{i:064x}", "size": 1000, "state": "captioned",
                                             "created_at": now, "updated_at": now} for i in ids])
            conn.execute(sa.insert(AssetPath), [{"asset_id": i, "path": f"/catalog/d{i // 1000:05d}/img{i:08d}.jpg",
                                                 "size": 1000, "mtime_ns": 1, "missing": False, "first_seen": now,
                                                 "last_seen": now} for i in ids])
            conn.execute(sa.insert(Job), [{"asset_id": i, "state": "done", "attempts": 1, "run_after": now,
                                           "created_at": now, "updated_at": now, "finished_at": now} for i in ids])
            conn.execute(sa.insert(Caption), [
                {"asset_id": i, "kind": kind, "model_text": f"a red {kind} {i}", "text": f"a red {kind} {i}",
                 "state": states[i % len(states)], "model": "m", "generation": {}, "version": 1, "context": {},
                 "warnings": [], "created_at": now, "updated_at": now}
                for i in ids for kind in ("alt_text", "description")])
    engine.dispose()


def timed_command(home: Path, *args: str, python: tuple[str, ...] = ("-m", "catalogcap")) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one fresh process."""
    env = {**os.environ, "CATALOGCAP_HOME": str(home), "PYTHONPATH": str(ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *python, *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0, done.stderr[-2000:]
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median_of(repeat: int, home: Path, *args: str, **kw) -> tuple[float, float]:
    """The median wall and the median CPU seconds of `repeat` runs (CPU: what a quiet machine's wall
    time comes near; on a loaded one the wall time also counts waiting for a core)."""
    runs = [timed_command(home, *args, **kw) for _ in range(repeat)]
    return (round(statistics.median(wall for wall, _ in runs), 2), round(statistics.median(cpu for _, cpu in runs), 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captions", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command; the median is reported")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    for package in (ROOT / "catalogcap", ROOT / "plugins"):
        compileall.compile_dir(package, quiet=1)
    from catalogcap.status import store_status
    from catalogcap.store.captions import list_captions
    from catalogcap.store.database import create_store_engine, read_session

    with tempfile.TemporaryDirectory(prefix="catalogcap-store-scale-") as tmp:
        home = Path(tmp)
        url = f"sqlite:///{home / 'catalogcap.db'}"
        started = time.perf_counter()
        build(url, args.captions)
        built = time.perf_counter() - started
        engine = create_store_engine(url)
        with read_session(engine) as session:
            started = time.perf_counter()
            page = list_captions(session, limit=100)
            list_s = time.perf_counter() - started
        started = time.perf_counter()
        status = store_status(engine)
        status_s = time.perf_counter() - started
        assert len(page) == 100 and sum(status["captions"].values()) == args.captions
        engine.dispose()
        empty = home / "empty"
        empty.mkdir()
        startup, _ = timed_command(empty, "status", "--json")
        n = args.repeat
        result = {"captions": args.captions, "build_s": round(built, 1), "repeat": n,
                  "list_first_page_s": round(list_s, 3), "status_s": round(status_s, 3)}
        for name, command, python in (("captions_list_json_cmd", ("captions", "list", "--json"), ("-m", "catalogcap")),
                                      ("status_json_cmd", ("status", "--json"), ("-m", "catalogcap")),
                                      ("status_help_cmd", ("status", "--help"), ("-m", "catalogcap")),
                                      ("python_start", ("-c", "pass"), ())):
            result[f"{name}_s"], result[f"{name}_cpu_s"] = median_of(n, home, *command, python=python)
        result["cli_start_on_empty_store_s"] = round(startup, 2)
        result["load_average"] = round(os.getloadavg()[0], 1)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['captions']} captions (built in {result['build_s']} s):")
    print(f"  in process: first page of captions {result['list_first_page_s']} s, store status {result['status_s']} s")
    print(f"  commands (median of {result['repeat']}, wall / CPU): captions list --json "
          f"{result['captions_list_json_cmd_s']} / {result['captions_list_json_cmd_cpu_s']} s, status --json "
          f"{result['status_json_cmd_s']} / {result['status_json_cmd_cpu_s']} s")
    print(f"  their floor: python start {result['python_start_s']} / {result['python_start_cpu_s']} s, status --help "
          f"{result['status_help_cmd_s']} / {result['status_help_cmd_cpu_s']} s (a first status on an empty store,"
          f" schema created: {result['cli_start_on_empty_store_s']} s); load average {result['load_average']}")


if __name__ == "__main__":
    main()
