"""HTTP API under a bounded local load: caption-page throughput and upload-to-captions latency.

    python benchmarks/api_load.py [--captions 5000] [--clients 4] [--seconds 10] [--uploads 40] [--json]

Starts `catalogcap serve` (its own process, worker thread on, the tiny BLIP) on a
temporary home seeded with captions, then from this process, with a fixed number of
closed-loop clients (each waits for its answer before asking again):
  1. GET /healthz: the framework's floor, the baseline of the ratios;
  2. GET /v1/captions?limit=100, walking the cursor (authenticated, a joined query per page);
  3. upload-to-captions: POST /v1/images, then GET /v1/images/{fp}/captions?wait=60, one at a
     time and then `--clients` at once.
Prints requests per second, p50/p95 latency and the ratio to /healthz, and for uploads the
part spent outside the job (HTTP, upload handling, long-poll granularity) apart from the
queue + model time. Not a test: the numbers depend on the machine (client and server
share its cores).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


def _closed_loop(base: str, headers: dict[str, str], clients: int, seconds: float, step) -> dict[str, float]:
    """`clients` threads each calling step(http, state) until time is up; rps and latency."""
    import httpx

    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def run() -> None:
        state: dict = {}
        mine = []
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                step(http, state)
                mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    began = time.monotonic()
    threads = [threading.Thread(target=run) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    return {"requests": len(latencies), "rps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(_percentile(latencies, 0.5) * 1000, 2),
            "p95_ms": round(_percentile(latencies, 0.95) * 1000, 2)}


def _healthz(http, _state) -> None:
    http.get("/healthz").raise_for_status()


def _caption_page(http, state) -> None:
    params = {"limit": 100, **({"cursor": state["cursor"]} if state.get("cursor") else {})}
    page = http.get("/v1/captions", params=params)
    page.raise_for_status()
    body = page.json()
    state["cursor"] = body["next_cursor"] if body["has_more"] else None


def _jpeg(seed: int) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (320, 240), (seed * 37 % 256, seed * 91 % 256, seed * 53 % 256))
    image.paste(Image.new("RGB", (160, 120), (255 - seed % 256, seed % 256, 128)), (80, 60))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _upload_to_captions(base: str, headers: dict[str, str], seed: int) -> tuple[float, float]:
    """(seconds from POST to captions in hand, of which the job spent queued + captioning)."""
    from datetime import datetime

    import httpx

    with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
        started = time.perf_counter()
        added = http.post("/v1/images", files={"file": ("p.jpg", _jpeg(seed), "image/jpeg")})
        added.raise_for_status()
        got = http.get(f"/v1/images/{added.json()['fingerprint']}/captions", params={"wait": 60}).json()
        total = time.perf_counter() - started
    assert got["captions"], got
    job = got["image"]["job"]
    in_queue = datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["created_at"])
    return total, in_queue.total_seconds()


def _latencies(runs: list[tuple[float, float]]) -> dict[str, float]:
    totals = [total for total, _ in runs]
    overhead = [total - job for total, job in runs]  # HTTP, upload handling, long-poll granularity
    return {"n": len(runs), "p50_s": round(statistics.median(totals), 3), "p95_s": round(_percentile(totals, 0.95), 3),
            "max_s": round(max(totals), 3), "api_overhead_p50_s": round(statistics.median(overhead), 3),
            "api_overhead_p95_s": round(_percentile(overhead, 0.95), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captions", type=int, default=5000, help="images seeded (two captions each)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--uploads", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import httpx

    from catalogcap.api.tokens import create_token
    from catalogcap.demo.tiny import build_tiny_blip
    from catalogcap.settings import load_settings
    from catalogcap.store.captions import save_model_captions
    from catalogcap.store.database import create_store_engine, write_session
    from catalogcap.store.models import Asset

    root = Path(tempfile.mkdtemp(prefix="catalogcap-api-bench-"))
    build_tiny_blip(root / "model")
    home = root / "home"
    home.mkdir()
    env = {**os.environ, "CATALOGCAP_HOME": str(home), "CATALOGCAP_MODEL": str(root / "model"),
           "CATALOGCAP_GENERATION__ALT_TEXT__MAX_NEW_TOKENS": "8",
           "CATALOGCAP_GENERATION__DESCRIPTION__MAX_NEW_TOKENS": "12", "CATALOGCAP_QUEUE__MAX_WAIT_SECONDS": "0",
           "CATALOGCAP_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    settings = load_settings({"home": str(home)})
    engine = create_store_engine(settings.db_url)
    with write_session(engine) as session:
        for n in range(args.captions):
            asset = Asset(fingerprint=f"{n:064x}", size=1000, state="captioned", format="JPEG", width=320, height=240)
            session.add(asset)
            session.flush()
            save_model_captions(session, asset.id, {"alt_text": f"red shirt {n}", "description": f"a red shirt {n}"},
                                model="tiny", adapter_id=None, generation={"alt_text": {}, "description": {}})
    headers = {"Authorization": f"Bearer {create_token(engine, 'bench', 'review').secret}"}
    engine.dispose()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "catalogcap", "serve", "--port", str(port)], env=env,
                              cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        baseline = _closed_loop(base, {}, args.clients, args.seconds, _healthz)
        pages = _closed_loop(base, headers, args.clients, args.seconds, _caption_page)
        _upload_to_captions(base, headers, 10**6)  # the model is warm from here on
        serial = [_upload_to_captions(base, headers, i) for i in range(args.uploads // 2)]
        with ThreadPoolExecutor(args.clients) as pool:
            burst = list(pool.map(lambda i: _upload_to_captions(base, headers, i),
                                  range(args.uploads // 2, args.uploads)))
    finally:
        server.terminate()
        server.wait(60)
    result = {
        "clients": args.clients, "seeded_captions": 2 * args.captions, "cpus": os.cpu_count(),
        "healthz": baseline, "captions_page_100": pages,
        "captions_page_ratio_to_healthz": round(pages["rps"] / baseline["rps"], 3),
        "captions_per_second_served": round(pages["rps"] * 100, 0),
        "upload_to_captions_serial": _latencies(serial), "upload_to_captions_concurrent": _latencies(burst),
    }
    if args.json:
        print(json.dumps(result))
        return
    for label, row in (("GET /healthz", baseline), ("GET /v1/captions (100)", pages)):
        print(f"{label:<24}{row['rps']:>8} req/s  p50 {row['p50_ms']} ms  p95 {row['p95_ms']} ms")
    print(f"captions pages: {result['captions_page_ratio_to_healthz']}x healthz,"
          f" {result['captions_per_second_served']:.0f} captions/s")
    for label, key in (("one at a time", "upload_to_captions_serial"),
                       (f"{args.clients} at once", "upload_to_captions_concurrent")):
        lat = result[key]
        print(f"upload -> captions, {label:<13} n={lat['n']}  p50 {lat['p50_s']} s  p95 {lat['p95_s']} s"
              f"  max {lat['max_s']} s; outside the job: p50 {lat['api_overhead_p50_s']} s"
              f"  p95 {lat['api_overhead_p95_s']} s")

if __name__ == "__main__":
    main()
