"""A training round from any door (the `train` command, the nightly schedule's child, the demo):
run it, and announce a promotion after the round committed it."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from catalogcap.services.announce import Announcer
from catalogcap.settings import Settings
from catalogcap.training import registry
from catalogcap.training.round import RoundResult, run_round


def train_round(engine: Engine, settings: Settings, announce: Announcer, **options: Any) -> RoundResult:
    """`run_round` with `options` (force, resume, dry_run, trigger, on_step); when the candidate
    was promoted, plugins hear `adapter_promoted` for it once the promotion is in the store."""
    result = run_round(engine, settings, **options)
    if result.promoted and result.adapter:
        announce.adapter_promoted(registry.get(engine, result.adapter))
    return result
