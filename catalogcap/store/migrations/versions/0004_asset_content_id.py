"""Assets get `content_id`, the sha256 of the picture without its metadata, so a metadata-only
rewrite of a file (exiftool, `export xmp -o mode=embed`) keeps its asset and reviews.

Existing rows start with NULL: reading every image inside a migration could take hours on a
large catalog. The next `catalogcap scan` (or the watch daemon's start-up reconciliation)
fills it in for every file whose size and mtime still match what the store saw, reading each
such file once; until then a metadata rewrite of such a file is still taken for a new image.

Revision ID: 0004
Revises: 0003 (API tokens)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("assets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content_id", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_assets_content_id"), ["content_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("assets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assets_content_id"))
        batch_op.drop_column("content_id")
