"""Draw a synthetic product catalog with ground-truth captions (deterministic by seed).

    python examples/make_catalog.py OUT_DIR --count 200 --seed 3

Writes JPEG/PNG/WebP product photos (some EXIF-rotated, some transparent) and
`truth.jsonl` with each file's attributes and its captions in the generic and house styles.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from catalogcap.demo import catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    items = catalog.products(args.count, seed=args.seed)
    written = catalog.write_catalog(args.out, items)
    with (args.out / "truth.jsonl").open("w", encoding="utf-8") as handle:
        for name, item in written.items():
            handle.write(json.dumps({
                "file": name, "product": item.product, "colour": item.colour, "pattern": item.pattern,
                "background": item.background, "rotated": item.rotated, "transparent": item.transparent,
                "generic": {k: item.generic(k) for k in ("alt_text", "description")},
                "house": {k: item.house(k) for k in ("alt_text", "description")},
            }) + "\n")
    print(f"wrote {len(written)} images and truth.jsonl to {args.out}")


if __name__ == "__main__":
    main()
