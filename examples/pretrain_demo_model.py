"""Rebuild the demo base model shipped in catalogcap/demo/model/ (reproducible by seed).

    python examples/pretrain_demo_model.py --seed 7 --out catalogcap/demo/model

A tiny BLIP (same classes and file format as Salesforce/blip-image-captioning-base) is
trained from scratch on the synthetic catalog's *generic* captions. About 10 minutes
on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from catalogcap.demo.pretrain import pretrain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--out", type=Path, default=Path("catalogcap/demo/model"))
    args = parser.parse_args()
    pretrain(args.out, seed=args.seed, steps=args.steps, images=args.images)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
