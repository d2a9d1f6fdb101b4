"""The adapter registry: versioned folders under home/adapters and one row per adapter.

A folder is written under a temporary name and renamed into place, then its row is
inserted; promotion switches the active pointer (the single row in state `active`) in
one transaction, so a reader sees either the old or the new adapter, never none.
States: candidate -> active -> retired (or rolled_back); candidate -> rejected; deleted.
"""

from __future__ import annotations

import json
import secrets
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from catalogcap.errors import CatalogcapError, NotFound
from catalogcap.store.database import ADAPTERS_LOCK_KEY, read_session, serialize, write_session
from catalogcap.store.models import Adapter, utcnow

META_NAME = "catalogcap-adapter.json"


def new_adapter_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def adapters_dir(home: Path) -> Path:
    return home / "adapters"


def register_candidate(engine: Engine, home: Path, source: Path, *, adapter_id: str, base_model: str,
                       parent_id: str | None, metrics: dict[str, Any], config: dict[str, Any]) -> Adapter:
    """Copy a trained adapter into the registry (temp name, then rename) and record it."""
    if not (source / "adapter_model.safetensors").is_file():
        raise CatalogcapError(f"{source} holds no adapter_model.safetensors")
    root = adapters_dir(home)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{adapter_id}"
    final = root / adapter_id
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(source, tmp)
    created = utcnow()
    meta = {"id": adapter_id, "parent": parent_id, "base_model": base_model, "created": created.isoformat(),
            "metrics": metrics, "settings": config, "dataset": config.get("dataset")}
    (tmp / META_NAME).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    tmp.rename(final)
    with write_session(engine) as session:
        adapter = Adapter(id=adapter_id, base_model=base_model, path=str(final), state="candidate",
                          metrics=metrics, config=config, parent_id=parent_id, created_at=created)
        session.add(adapter)
    return adapter


def get(engine: Engine, adapter_id: str) -> Adapter:
    with read_session(engine) as session:
        adapter = session.get(Adapter, adapter_id)
    if adapter is None:
        raise NotFound(f"adapter {adapter_id} does not exist; `catalogcap adapters list` shows them")
    return adapter


def active(engine: Engine) -> Adapter | None:
    with read_session(engine) as session:
        return session.exec(select(Adapter).where(Adapter.state == "active")).first()


def list_all(engine: Engine) -> list[Adapter]:
    with read_session(engine) as session:
        return list(session.exec(select(Adapter).order_by(col(Adapter.created_at).desc())).all())


def promote(engine: Engine, adapter_id: str, *, reason: str, manual: bool = False) -> Adapter:
    """Make `adapter_id` the active adapter, retiring the current one, in one transaction."""
    now = utcnow()
    with write_session(engine) as session:
        serialize(session, ADAPTERS_LOCK_KEY)  # at most one active adapter, on PostgreSQL too
        adapter = session.get(Adapter, adapter_id)
        if adapter is None or adapter.state == "deleted":
            raise NotFound(f"adapter {adapter_id} does not exist (or was deleted)")
        if not (Path(adapter.path) / "adapter_model.safetensors").is_file():
            raise CatalogcapError(f"adapter {adapter_id}: its folder {adapter.path} is missing its weights")
        if adapter.state == "active":
            return adapter
        for current in session.exec(select(Adapter).where(Adapter.state == "active")).all():
            current.state, current.retired_at = "retired", now
            session.add(current)
        adapter.state, adapter.promoted_at, adapter.retired_at = "active", now, None
        adapter.config = {**adapter.config, "promotion": {"at": now.isoformat(), "manual": manual,
                                                         "reason": reason}}
        session.add(adapter)
    return adapter


def reject(engine: Engine, adapter_id: str, reason: str) -> None:
    with write_session(engine) as session:
        serialize(session, ADAPTERS_LOCK_KEY)  # at most one active adapter, on PostgreSQL too
        adapter = session.get(Adapter, adapter_id)
        if adapter is not None and adapter.state == "candidate":
            adapter.state = "rejected"
            adapter.config = {**adapter.config, "rejection": reason}
            session.add(adapter)


class Rollback(NamedTuple):
    rolled_back: Adapter  # the adapter that was active
    active: Adapter | None  # the one active now (None: the base model)


def rollback(engine: Engine) -> Rollback:
    """Reactivate the adapter that was active before the current one (none: the base model)."""
    now = utcnow()
    with write_session(engine) as session:
        serialize(session, ADAPTERS_LOCK_KEY)  # at most one active adapter, on PostgreSQL too
        current = session.exec(select(Adapter).where(Adapter.state == "active")).first()
        if current is None:
            raise CatalogcapError("no adapter is active; nothing to roll back")
        previous = session.exec(
            select(Adapter).where(Adapter.state == "retired", col(Adapter.promoted_at).is_not(None),
                                  col(Adapter.promoted_at) < current.promoted_at)
            .order_by(col(Adapter.promoted_at).desc())
        ).first()
        current.state, current.retired_at = "rolled_back", now
        session.add(current)
        session.flush()
        if previous is not None:
            previous.state, previous.promoted_at, previous.retired_at = "active", previous.promoted_at, None
            previous.config = {**previous.config, "rollback": {"at": now.isoformat(), "from": current.id}}
            session.add(previous)
    return Rollback(current, previous)


def delete(engine: Engine, adapter_id: str) -> Adapter:
    """Remove an adapter's files; its row stays (state deleted) so old captions stay traceable."""
    with write_session(engine) as session:
        serialize(session, ADAPTERS_LOCK_KEY)
        adapter = session.get(Adapter, adapter_id)
        if adapter is None:
            raise NotFound(f"adapter {adapter_id} does not exist")
        if adapter.state == "active":
            raise CatalogcapError(f"adapter {adapter_id} is active; promote another or roll back first")
        adapter.state = "deleted"
        session.add(adapter)
        path = Path(adapter.path)
    if path.is_dir():
        shutil.rmtree(path)
    return adapter


def foreign(adapter: Adapter | None, model: str) -> bool:
    """True when `adapter` was trained for another base model than `model` (it cannot be applied)."""
    return adapter is not None and adapter.base_model != model


def usable_active(engine: Engine, model: str) -> tuple[Adapter | None, Adapter | None]:
    """(the active adapter if it fits `model`, the active adapter refused because it does not)."""
    adapter = active(engine)
    return (None, adapter) if foreign(adapter, model) else (adapter, None)
