"""Indexes for `status` on a large store, each count read from an index alone:

* captions (state, asset_id): the orphaned count (pending captions whose image has no live
  path) walked the pending captions by (state, kind, id) and read every row for its asset_id
  (0.58 s at 1,000,000 captions; 0.22 s from this covering index);
* jobs (state, finished_at): the throughput count (jobs done in the last 5 minutes) read every
  done job (0.17 s at 500,000 jobs; a range of this index);
* jobs (updated_at) WHERE last_error IS NOT NULL: the last job error, a scan and sort of all
  jobs (0.07 s), now the first entry of a small partial index;
* assets (missing_since) WHERE missing_since IS NOT NULL: the missing count, a scan of all
  assets (0.08 s), now the size of a small partial index.

Revision ID: 0009
Revises: 0008 (asset_paths live index)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("captions", schema=None) as batch_op:
        batch_op.create_index("ix_captions_state_asset_id", ["state", "asset_id"], unique=False)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_state_finished_at", ["state", "finished_at"], unique=False)
        batch_op.create_index(
            "ix_jobs_errors_updated_at", ["updated_at"], unique=False,
            sqlite_where=sa.text("last_error IS NOT NULL"),
            postgresql_where=sa.text("last_error IS NOT NULL"),
        )
    with op.batch_alter_table("assets", schema=None) as batch_op:
        batch_op.create_index(
            "ix_assets_missing_since", ["missing_since"], unique=False,
            sqlite_where=sa.text("missing_since IS NOT NULL"),
            postgresql_where=sa.text("missing_since IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("assets", schema=None) as batch_op:
        batch_op.drop_index("ix_assets_missing_since")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_errors_updated_at")
        batch_op.drop_index("ix_jobs_state_finished_at")
    with op.batch_alter_table("captions", schema=None) as batch_op:
        batch_op.drop_index("ix_captions_state_asset_id")
