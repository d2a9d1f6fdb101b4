"""Caption again the images whose captions are still pending (reviewed ones are never redone)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import select

from catalogcap.errors import CatalogcapError
from catalogcap.services.announce import Announcer
from catalogcap.settings import Settings
from catalogcap.store.database import write_session
from catalogcap.store.models import Caption
from catalogcap.store.queue import enqueue
from catalogcap.worker import Worker

RECAPTIONABLE = ("pending",)


@dataclass(frozen=True)
class Recaptioned:
    queued: int
    captioned: int


def recaption(engine: Engine, settings: Settings, announce: Announcer, *, state: str = "pending",
              now: bool = True, worker_factory: Callable[..., Worker] = Worker) -> Recaptioned:
    """Queue every image with a caption in `state`; with `now`, caption them here (each batch's
    captions announced after its commit), else leave them to `watch` or `serve`."""
    if state not in RECAPTIONABLE:
        raise CatalogcapError(f"cannot recaption {state} captions: a reviewed caption is never overwritten;"
                              f" use one of {', '.join(RECAPTIONABLE)}")
    with write_session(engine) as session:
        asset_ids = sorted(set(session.exec(select(Caption.asset_id).where(Caption.state == state)).all()))
        for asset_id in asset_ids:
            enqueue(session, asset_id)
    captioned = 0
    if now and asset_ids:
        worker = worker_factory(engine, settings, on_captions=announce.captions_created)
        try:
            captioned = worker.drain().captioned
        finally:
            worker.close()
    return Recaptioned(len(asset_ids), captioned)
