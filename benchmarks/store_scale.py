"""The store's read paths at catalog scale: `captions list --json` and `status --json` on a
store of N captions (default 1,000,000: 500,000 images with both kinds).

    python benchmarks/store_scale.py [--captions 1000000] [--json]

Builds a temporary SQLite store in bulk (assets, paths, jobs, captions in mixed states), then
times, in this process, the data each command reads (`list_captions` of the first page and
`store_status`), and, as a user runs them, the commands themselves (a fresh `python -m
catalogcap` process: interpreter start and imports included, which this machine's load
makes most of it). Target: each command under 1 s at 1,000,000 captions. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
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


def timed_command(home: Path, *args: str) -> float:
    env = {**os.environ, "CATALOGCAP_HOME": str(home), "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "catalogcap", *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-2000:]
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captions", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
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
        startup = timed_command(empty, "status", "--json")
        result = {"captions": args.captions, "build_s": round(built, 1),
                  "list_first_page_s": round(list_s, 3), "status_s": round(status_s, 3),
                  "captions_list_json_cmd_s": round(timed_command(home, "captions", "list", "--json"), 2),
                  "status_json_cmd_s": round(timed_command(home, "status", "--json"), 2),
                  "cli_start_on_empty_store_s": round(startup, 2)}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['captions']} captions (built in {result['build_s']} s):")
    print(f"  in process: first page of captions {result['list_first_page_s']} s, store status {result['status_s']} s")
    print(f"  commands:   captions list --json {result['captions_list_json_cmd_s']} s, status --json "
          f"{result['status_json_cmd_s']} s (the CLI's own start on an empty store: "
          f"{result['cli_start_on_empty_store_s']} s)")


if __name__ == "__main__":
    main()
