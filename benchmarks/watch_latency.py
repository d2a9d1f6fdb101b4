"""Watch daemon latency: from a file's last write to its captions being committed.

    python benchmarks/watch_latency.py [--files 1000] [--quiet-seconds 0.5] [--json] [--quick]

Runs the real daemon (watchdog observer, stability tracker, database queue, worker) in
this process on a temporary home with a tiny BLIP, drops a burst of files into the
watched folder, and reports p50/p95/max latency, plus the pipeline overhead per image
excluding model time, and its ratio to the model time measured in the same run:

- intake: the daemon's handler for a file that has stopped changing (`Daemon._arrived`,
  called by the stability tracker): the completeness check, then `register_file`
  (fingerprint, header probe, picture id, the asset, path and job rows);
- worker: `Worker.run_batch` less the model call (claim, path lookup, decode, commit).

`overhead_ms_per_image` is their sum; `worker_overhead_ms_per_image` and its ratio are the
worker part alone (what earlier versions called the pipeline overhead). The two run in
different threads and can overlap, so the sum is work done, not added latency (the
latency percentiles are that). Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--quiet-seconds", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--trickle", type=int, default=20,
                        help="After the burst, files dropped one at a time into an idle daemon.")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="200 files, 5 trickled.")
    args = parser.parse_args()
    if args.quick:
        args.files, args.trickle = 200, 5

    import sqlalchemy as sa
    from PIL import Image
    from sqlmodel import select

    from catalogcap.demo.tiny import build_tiny_blip
    from catalogcap.settings import load_settings
    from catalogcap.store.database import create_store_engine, read_session
    from catalogcap.store.models import AssetPath, Job
    from catalogcap.watch.daemon import Daemon
    from catalogcap.worker import Worker

    root = Path(tempfile.mkdtemp(prefix="catalogcap-bench-"))
    build_tiny_blip(root / "model")
    (root / "home").mkdir()
    inbox = root / "inbox"
    inbox.mkdir()
    settings = load_settings({
        "home": str(root / "home"), "model": str(root / "model"), "batch_size": args.batch_size,
        "watch.quiet_seconds": args.quiet_seconds, "queue.max_wait_seconds": 0.2,
        "generation.alt_text.max_new_tokens": 8, "generation.description.max_new_tokens": 12,
    })
    engine = create_store_engine(settings.db_url)
    timings = {"model": 0.0, "batches": 0.0, "intake": 0.0}
    worker = Worker(engine, settings)
    real_batch = worker.run_batch

    def timed_batch(limit=None):
        start = time.perf_counter()
        result = real_batch(limit)
        timings["batches"] += time.perf_counter() - start
        return result

    worker.run_batch = timed_batch  # type: ignore[method-assign]
    captioner = worker.captioner()
    real_caption = captioner.caption_images

    def timed_caption(images):
        start = time.perf_counter()
        out = real_caption(images)
        timings["model"] += time.perf_counter() - start
        return out

    captioner.caption_images = timed_caption  # type: ignore[method-assign]
    daemon = Daemon(engine, settings, [inbox], worker=worker, schedule_training=False)
    intake_lock = threading.Lock()
    real_arrived = daemon.tracker.on_stable

    def timed_arrived(path: Path) -> None:
        start = time.perf_counter()
        real_arrived(path)
        with intake_lock:  # the tracker may call it from more than one thread
            timings["intake"] += time.perf_counter() - start

    daemon.tracker.on_stable = timed_arrived
    ready = threading.Event()
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False, "ready": ready}, daemon=True)
    thread.start()
    ready.wait(60)

    written: dict[str, float] = {}
    start = time.perf_counter()
    for n in range(args.files):
        path = inbox / f"img-{n:05d}.jpg"
        Image.new("RGB", (64 + n % 40, 48 + n // 40 % 40), (n * 7 % 255, n * 13 % 255, n * 29 % 255)).save(path)
        written[str(path)] = time.time()
    burst = time.perf_counter() - start

    def done() -> int:
        with read_session(engine) as session:
            return session.execute(select(sa.func.count()).select_from(Job).where(Job.state == "done")).scalar_one()

    while done() < args.files:
        time.sleep(0.2)
    idle: list[float] = []
    for n in range(args.trickle):
        path = inbox / f"single-{n:03d}.png"
        Image.new("RGB", (80, 60), (n * 11 % 255, 90, 160)).save(path)
        written[str(path)] = time.time()
        while done() < args.files + n + 1:
            time.sleep(0.02)
        idle.append(time.time() - written[str(path)])
    daemon.stop()
    thread.join(60)
    with read_session(engine) as session:
        rows = session.execute(select(AssetPath.path, Job.finished_at).join(Job, Job.asset_id == AssetPath.asset_id)
                               .where(Job.state == "done")).all()
    latencies = sorted(finished.timestamp() - written[path] for path, finished in rows
                       if path in written and "single-" not in path)
    q = statistics.quantiles(latencies, n=100)
    total = args.files + args.trickle
    worker_overhead = (timings["batches"] - timings["model"]) / total
    intake = timings["intake"] / total
    overhead = intake + worker_overhead
    model = max(timings["model"] / total, 1e-9)
    result = {
        "files": args.files, "burst_seconds": round(burst, 2), "quiet_seconds": args.quiet_seconds,
        "p50_s": round(q[49], 3), "p95_s": round(q[94], 3), "max_s": round(latencies[-1], 3),
        "idle_p50_s": round(statistics.median(idle), 3) if idle else None,
        "idle_max_s": round(max(idle), 3) if idle else None,
        "overhead_ms_per_image": round(overhead * 1000, 2),
        "intake_ms_per_image": round(intake * 1000, 2),
        "worker_overhead_ms_per_image": round(worker_overhead * 1000, 2),
        "model_ms_per_image": round(timings["model"] / total * 1000, 2),
        "overhead_to_model_ratio": round(overhead / model, 3),
        "worker_overhead_to_model_ratio": round(worker_overhead / model, 3),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>30}: {value}")


if __name__ == "__main__":
    main()
