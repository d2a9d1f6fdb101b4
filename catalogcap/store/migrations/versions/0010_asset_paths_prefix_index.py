"""PostgreSQL: an index the per-root prefix match of a rescan can use.

`scan` (and the daemon's reconcile at every start) loads what the store knows below each
folder with `path LIKE '<folder>/%'`. Under any collation but "C" PostgreSQL cannot answer a
LIKE from the plain unique index on `asset_paths.path`, so each folder read every path of the
store: 33-35 ms per folder at 200,000 paths (C.UTF-8 and ICU en-US databases alike), growing
with the store, not with the folder. With `path text_pattern_ops` it is a range of this index:
3-5 ms. SQLite compares paths bytewise and already answers its range from the unique index:
nothing to do there.

The index is not on the models (`tests/test_store.py` knows it as PostgreSQL-only).

Revision ID: 0010
Revises: 0009 (status count indexes)
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

INDEX = "ix_asset_paths_path_pattern"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(INDEX, "asset_paths", ["path"], unique=False, postgresql_ops={"path": "text_pattern_ops"})


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(INDEX, table_name="asset_paths")
