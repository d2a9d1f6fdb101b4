"""Intake at catalog scale: files/s of a first registration (`scan --queue-only`) and of a
rescan of unchanged files, beside the per-file path earlier versions took and a bare walk.

    python benchmarks/rescan.py [--files 20000] [--files 200000] [--per-file-max 20000] [--first-max 200000]
                                [--first-per-file-max 2000] [--repeat 3] [--json]

Sizes default to 20,000 and 200,000 files. For each size, in one process on a temporary
SQLite store:

- walk: the bare floor, a recursive `os.scandir` + `stat` of every file (nothing else);
- first: `catalogcap.intake.scan` of the new files (fingerprint, header probe, picture id,
  asset, path and job rows, in chunks of 500 per transaction), as `scan --queue-only` does;
  only up to `--first-max` files, above it the store is filled with the same asset and path
  rows by direct inserts;
- first_per_file: the first registration through `register_file` once per file (what `scan`
  did before the bulk path: one transaction and about 14 statements per file), of the first
  `--first-per-file-max` files (default 2,000; 100-140 files/s on 2 cores) into another store,
  the baseline of first;
- rescan: `scan` again with nothing changed (the daemon's reconcile at every start): one
  query for what the store knows below the folder, a stat per file, one bulk `last_seen`;
- per_file: the same rescan through `register_file` once per file (what `scan` did before
  the bulk path: three queries and a transaction per file), the baseline; only up to
  `--per-file-max` files (about 900 files/s: 200,000 files would take minutes), else skipped.

walk and rescan are each run `--repeat` times, alternating, and the fastest of each is kept
(the machine may be busy with other work; the ratio of the two is what counts). Prints
files/s of each and the ratios rescan/per_file (target >= 20) and rescan/walk (target <= 5).
Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _write_files(root: Path, count: int) -> None:
    """`count` tiny PNGs of distinct pictures (each its own asset), 500 per folder."""
    from PIL import Image

    for n in range(count):
        folder = root / f"d{n // 500:04d}"
        if n % 500 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (n % 256, (n // 256) % 256, (n // 65536) % 256)).save(buffer, "PNG")
        (folder / f"img{n:07d}.png").write_bytes(buffer.getvalue())


def _walk(root: Path) -> int:
    count = 0
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    os.stat(entry.path)
                    count += 1
    return count


def _fill_store(engine, root: Path) -> None:
    """The rows a first registration leaves (an asset and a live path per file, size and mtime
    as on disk), inserted directly: the rescan only reads those."""
    import hashlib

    import sqlalchemy as sa

    from catalogcap.store.models import Asset, AssetPath, utcnow

    now = utcnow()
    assets, paths = [], []
    for n, path in enumerate(sorted(str(p) for p in root.rglob("*.png")), start=1):
        stat = os.stat(path)
        with open(path, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
        assets.append({"id": n, "fingerprint": digest, "content_id": digest, "size": stat.st_size, "state": "queued",
                       "created_at": now, "updated_at": now})
        paths.append({"asset_id": n, "path": path, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                      "missing": False, "first_seen": now, "last_seen": now})
    with engine.begin() as connection:
        for table, rows in ((Asset.__table__, assets), (AssetPath.__table__, paths)):
            for start in range(0, len(rows), 10_000):
                connection.execute(sa.insert(table), rows[start:start + 10_000])


def measure(count: int, *, per_file_max: int = 20_000, first_max: int = 200_000, first_per_file_max: int = 2_000,
            repeat: int = 3) -> dict[str, float | None]:
    from catalogcap.intake import iter_images, register_file, scan
    from catalogcap.settings import Settings
    from catalogcap.store.database import create_store_engine

    with tempfile.TemporaryDirectory(prefix="catalogcap-rescan-") as tmp:
        home, root = Path(tmp) / "home", Path(tmp) / "catalog"
        home.mkdir()
        _write_files(root, count)
        settings = Settings(home=home)
        first_per_file_n, first_per_file_s = min(count, first_per_file_max), None
        if first_per_file_n:  # the baseline, in a store of its own
            (Path(tmp) / "home-per-file").mkdir()
            baseline = Settings(home=Path(tmp) / "home-per-file")
            baseline_engine = create_store_engine(baseline.db_url)
            paths = [path for _, path in zip(range(first_per_file_n), iter_images(root, baseline))]
            started = time.perf_counter()
            outcomes = [register_file(baseline_engine, path, baseline).outcome for path in paths]
            first_per_file_s = time.perf_counter() - started
            assert outcomes.count("new") == first_per_file_n, outcomes
            baseline_engine.dispose()
        engine = create_store_engine(settings.db_url)
        first_s = None
        if count <= first_max:
            started = time.perf_counter()
            first = scan(engine, [root], settings)
            first_s = time.perf_counter() - started
            assert first.outcomes["new"] == count, first.outcomes
        else:
            _fill_store(engine, root)
        walks, rescans = [], []
        for _ in range(max(1, repeat)):
            started = time.perf_counter()
            assert _walk(root) == count
            walks.append(time.perf_counter() - started)
            started = time.perf_counter()
            again = scan(engine, [root], settings)
            rescans.append(time.perf_counter() - started)
            assert again.outcomes["unchanged"] == count and again.missing == 0, again.outcomes
        walk, rescan_s = min(walks), min(rescans)
        per_file_s = None
        if count <= per_file_max:
            started = time.perf_counter()
            outcomes = [register_file(engine, path, settings).outcome for path in iter_images(root, settings)]
            per_file_s = time.perf_counter() - started
            assert outcomes.count("unchanged") == count
        engine.dispose()
    return {"files": count, "walk_files_s": round(count / walk),
            "first_files_s": round(count / first_s) if first_s else None,
            "first_s": round(first_s, 1) if first_s else None,
            "first_per_file_files_s": round(first_per_file_n / first_per_file_s) if first_per_file_s else None,
            "first_vs_per_file": round(first_per_file_s / first_per_file_n * count / first_s, 1)
            if first_s and first_per_file_s else None,
            "rescan_files_s": round(count / rescan_s),
            "rescan_s": round(rescan_s, 3), "walk_s": round(walk, 3),
            "per_file_rescan_files_s": round(count / per_file_s) if per_file_s else None,
            "rescan_vs_per_file": round(per_file_s / rescan_s, 1) if per_file_s else None,
            "walk_vs_rescan": round(rescan_s / walk, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, action="append", help="catalog size (repeatable; default 20000, 200000)")
    parser.add_argument("--per-file-max", type=int, default=20_000,
                        help="largest size the slow per-file baseline runs at (default 20000)")
    parser.add_argument("--first-max", type=int, default=200_000,
                        help="largest size the first registration is timed at (default 200000); above it the "
                             "store is filled by direct inserts")
    parser.add_argument("--first-per-file-max", type=int, default=2_000,
                        help="files the per-file first registration baseline registers (default 2000; 0: none)")
    parser.add_argument("--repeat", type=int, default=3, help="walks and rescans per size, fastest kept (default 3)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [measure(n, per_file_max=args.per_file_max, first_max=args.first_max,
                       first_per_file_max=args.first_per_file_max, repeat=args.repeat)
               for n in (args.files or [20_000, 200_000])]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        per_file = (f"per-file rescan {r['per_file_rescan_files_s']:>6}/s (rescan x{r['rescan_vs_per_file']} of it, "
                    "target >= 20)" if r["per_file_rescan_files_s"] else "per-file rescan skipped (--per-file-max)")
        first = (f"first registration {r['first_files_s']:>6}/s ({r['first_s']} s)" if r["first_files_s"]
                 else "first registration skipped (--first-max)")
        if r["first_per_file_files_s"]:
            first += f" (per file {r['first_per_file_files_s']}/s" + (
                f", x{r['first_vs_per_file']})" if r["first_vs_per_file"] else ")")
        print(f"{r['files']:>8} files: {first}  "
              f"rescan {r['rescan_files_s']:>7}/s  walk {r['walk_files_s']:>8}/s  {per_file}; the walk is "
              f"x{r['walk_vs_rescan']} faster than the rescan (target <= 5)")


if __name__ == "__main__":
    main()
