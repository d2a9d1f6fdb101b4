"""Intake at catalog scale: files/s of a first registration (`scan --queue-only`) and of a
rescan of unchanged files, beside the per-file path earlier versions took and a bare walk.

    python benchmarks/rescan.py [--files 20000] [--files 200000] [--json]

For each size, in one process on a temporary SQLite store:

- walk: the bare floor, a recursive `os.scandir` + `stat` of every file (nothing else);
- first: `catalogcap.intake.scan` of the new files (fingerprint, header probe, picture id,
  asset, path and job rows), as `scan --queue-only` does;
- rescan: `scan` again with nothing changed (the daemon's reconcile at every start), which
  compares each chunk of walked files with the store in one query;
- per_file: the same rescan through `register_file` once per file (what `scan` did before:
  three queries and a transaction per file), the baseline.

Prints files/s of each and the ratios rescan/per_file (target >= 20) and walk/rescan
(target <= 5). Not a test: numbers depend on the machine.
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


def measure(count: int) -> dict[str, float]:
    from catalogcap.intake import iter_images, register_file, scan
    from catalogcap.settings import Settings
    from catalogcap.store.database import create_store_engine

    with tempfile.TemporaryDirectory(prefix="catalogcap-rescan-") as tmp:
        home, root = Path(tmp) / "home", Path(tmp) / "catalog"
        home.mkdir()
        _write_files(root, count)
        settings = Settings(home=home)
        engine = create_store_engine(settings.db_url)
        started = time.perf_counter()
        assert _walk(root) == count
        walk = time.perf_counter() - started
        started = time.perf_counter()
        first = scan(engine, [root], settings)
        first_s = time.perf_counter() - started
        assert first.outcomes["new"] == count, first.outcomes
        started = time.perf_counter()
        again = scan(engine, [root], settings)
        rescan_s = time.perf_counter() - started
        assert again.outcomes["unchanged"] == count, again.outcomes
        started = time.perf_counter()
        outcomes = [register_file(engine, path, settings).outcome for path in iter_images(root, settings)]
        per_file_s = time.perf_counter() - started
        assert outcomes.count("unchanged") == count
        engine.dispose()
    return {"files": count, "walk_files_s": round(count / walk), "first_files_s": round(count / first_s),
            "rescan_files_s": round(count / rescan_s), "per_file_rescan_files_s": round(count / per_file_s),
            "rescan_vs_per_file": round(per_file_s / rescan_s, 1), "walk_vs_rescan": round(rescan_s / walk, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, action="append", help="catalog size (repeatable; default 20000)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [measure(n) for n in (args.files or [20_000])]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(f"{r['files']:>8} files: walk {r['walk_files_s']:>8}/s  first registration {r['first_files_s']:>6}/s  "
              f"rescan {r['rescan_files_s']:>7}/s  per-file rescan {r['per_file_rescan_files_s']:>6}/s  "
              f"rescan x{r['rescan_vs_per_file']} of per-file (target >= 20), walk is x{r['walk_vs_rescan']} faster "
              "than rescan (target <= 5)")


if __name__ == "__main__":
    main()
