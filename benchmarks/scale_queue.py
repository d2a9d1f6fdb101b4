"""The job queue under many workers: N processes claiming and completing stub jobs (no model)
on PostgreSQL and on SQLite, with a check that each job completed exactly once.

    python benchmarks/scale_queue.py [--jobs 20000] [--workers 8] [--batch 32] [--json]

Each worker process runs catalogcap's own queue calls, as `catalogcap worker` does: `claim`
(one `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING` on PostgreSQL,
the same statement under `BEGIN IMMEDIATE` on SQLite), then `complete` of each job of the
batch in one transaction, until nothing is runnable. PostgreSQL is a throw-away server
(tests/pgserver.py: initdb + pg_ctl in a temp dir; skipped when its binaries are missing).
Prints jobs/s per backend and whether every job was completed exactly once. Not a test:
numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _work(url: str, batch: int, ready: mp.Queue, start: mp.Event, out: mp.Queue) -> None:
    from catalogcap.store.database import create_store_engine, write_session
    from catalogcap.store.queue import claim, complete, new_owner

    engine = create_store_engine(url, migrate=False)
    owner = new_owner("bench")
    done: list[int] = []
    engine.connect().close()  # imported and connected before the clock starts
    ready.put(owner)
    start.wait()
    while True:
        claimed = claim(engine, owner, batch, lease_seconds=300)
        if not claimed:
            break
        with write_session(engine) as session:
            for job in claimed:
                if complete(session, job.job_id, owner):
                    done.append(job.job_id)
    engine.dispose()
    out.put(done)


def _fill(url: str, jobs: int) -> None:
    import sqlalchemy as sa

    from catalogcap.store.database import create_store_engine, write_session
    from catalogcap.store.models import Asset, Job, utcnow

    engine = create_store_engine(url)
    now = utcnow()
    with write_session(engine) as session:
        for start in range(0, jobs, 5000):
            n = min(5000, jobs - start)
            session.execute(sa.insert(Asset), [{"fingerprint": f"{i:064x}", "size": 1, "state": "queued",
                                                "created_at": now, "updated_at": now}
                                               for i in range(start, start + n)])
        ids = session.execute(sa.select(Asset.id).order_by(Asset.id)).scalars().all()
        for start in range(0, len(ids), 5000):
            session.execute(sa.insert(Job), [{"asset_id": a, "state": "pending", "attempts": 0, "run_after": now,
                                              "created_at": now, "updated_at": now} for a in ids[start:start + 5000]])
    engine.dispose()


def measure(url: str, jobs: int, workers: int, batch: int) -> dict[str, object]:
    _fill(url, jobs)
    ctx = mp.get_context("spawn")
    ready, start, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_work, args=(url, batch, ready, start, out)) for _ in range(workers)]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=300)
    began = time.perf_counter()
    start.set()
    done = [out.get(timeout=3600) for _ in procs]
    seconds = time.perf_counter() - began
    for proc in procs:
        proc.join()
    completed = [job for part in done for job in part]
    return {"jobs": jobs, "workers": workers, "batch": batch, "seconds": round(seconds, 2),
            "jobs_s": round(len(completed) / seconds), "exactly_once": len(completed) == len(set(completed)) == jobs,
            "per_worker": [len(part) for part in done]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="catalogcap-queue-bench-") as tmp:
        results["sqlite"] = measure(f"sqlite:///{Path(tmp) / 'queue.db'}", args.jobs, args.workers, args.batch)
    from tests import pgserver

    reason = pgserver.why_not()
    if reason is None:
        server = pgserver.Server()
        server.start()
        try:
            results["postgresql"] = measure(server.create_database("bench"), args.jobs, args.workers, args.batch)
        finally:
            server.stop()
    else:
        results["postgresql"] = {"skipped": reason}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for backend, r in results.items():
        if "skipped" in r:
            print(f"{backend:>10}: skipped ({r['skipped']})")
            continue
        print(f"{backend:>10}: {r['jobs']} jobs, {r['workers']} processes, batch {r['batch']}: {r['jobs_s']} jobs/s "
              f"({r['seconds']} s); each completed exactly once: {r['exactly_once']}; per worker {r['per_worker']}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
