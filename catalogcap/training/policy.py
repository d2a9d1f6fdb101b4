"""How much a round trains, and on what it chooses: the step budget and the dev split.

Kept free of torch so that `train --dry-run` and `status` can describe a round cheaply.
See trainer.py for the policy as a whole.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from catalogcap.settings import TrainingSettings

MIN_DEV_IMAGES = 4


@dataclass
class Budget:
    """How much a round trains: optimizer steps per learning rate, when to score, which rates."""

    steps: int
    eval_every: int
    lrs: list[float]
    per_epoch: int
    rule: str

    @classmethod
    def plan(cls, n_examples: int, cfg: TrainingSettings) -> Budget:
        per_epoch = max(1, math.ceil(n_examples / cfg.batch_size / cfg.grad_accum))
        if cfg.max_steps:
            steps, rule = cfg.max_steps, "training.max_steps"
        elif cfg.epochs:
            steps, rule = per_epoch * cfg.epochs, f"training.epochs = {cfg.epochs}"
        else:
            wanted = math.ceil(per_epoch * cfg.epochs_budget)
            steps = min(max(wanted, cfg.min_steps), cfg.max_auto_steps)
            rule = (f"{cfg.epochs_budget:g} passes = {wanted} steps" if steps == wanted else
                    f"{cfg.epochs_budget:g} passes = {wanted} steps, "
                    f"{'raised to training.min_steps' if wanted < steps else 'cut to training.max_auto_steps'}")
        lrs = [cfg.lr] if cfg.lr else list(cfg.lr_candidates)
        return cls(steps, max(1, math.ceil(steps / cfg.evals_per_run)), lrs, per_epoch, rule)


def split_dev(fingerprints: list[str], cfg: TrainingSettings) -> set[str]:
    """The training images held back to score checkpoints: a seeded, stable share of them."""
    ranked = sorted(set(fingerprints), key=lambda fp: hashlib.sha256(f"dev:{cfg.seed}:{fp}".encode()).digest())
    if len(ranked) < 2 * MIN_DEV_IMAGES:
        return set()
    n = min(cfg.max_dev_images, max(MIN_DEV_IMAGES, round(len(ranked) * cfg.dev_percent / 100)))
    return set(ranked[:n])


