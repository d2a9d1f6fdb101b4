"""The catalog store: tables, engine and migrations, and the captioning queue."""

from catalogcap.store.database import create_store_engine, read_session, write_session
from catalogcap.store.models import Adapter, Asset, AssetPath, Caption, Job

__all__ = ["Adapter", "Asset", "AssetPath", "Caption", "Job", "create_store_engine", "read_session",
           "write_session"]
