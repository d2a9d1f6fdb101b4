"""Product data and caption provenance: the `products` table (import, sidecar, API, plugin),
captions' `source` (human text that existed before catalogcap), `context` (the product fields
the prompt used), `profile` and `warnings`, and asset paths' `source_name` (a client's own
file name, for export matching). Existing captions get empty context and warnings.

Revision ID: 0007
Revises: 0006 (outbox)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("origin", sa.String(), nullable=True),
        sa.Column("file", sa.String(), nullable=True),
        sa.Column("file_folded", sa.String(), nullable=True),
        sa.Column("asset_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(), nullable=True),
        sa.Column("brand", sa.String(), nullable=True),
        sa.Column("category", sa.String(), nullable=True),
        sa.Column("sku", sa.String(), nullable=True),
        sa.Column("color", sa.String(), nullable=True),
        sa.Column("material", sa.String(), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("alt_text", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["asset_id"], ["assets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_products_key"), ["key"], unique=True)
        batch_op.create_index(batch_op.f("ix_products_file"), ["file"], unique=False)
        batch_op.create_index(batch_op.f("ix_products_file_folded"), ["file_folded"], unique=False)
        batch_op.create_index(batch_op.f("ix_products_asset_id"), ["asset_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_products_sku"), ["sku"], unique=False)
    with op.batch_alter_table("captions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("context", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("profile", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("warnings", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("captions", schema=None) as batch_op:
        batch_op.alter_column("context", server_default=None)
        batch_op.alter_column("warnings", server_default=None)
    with op.batch_alter_table("asset_paths", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_name", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("asset_paths", schema=None) as batch_op:
        batch_op.drop_column("source_name")
    with op.batch_alter_table("captions", schema=None) as batch_op:
        batch_op.drop_column("warnings")
        batch_op.drop_column("profile")
        batch_op.drop_column("context")
        batch_op.drop_column("source")
    with op.batch_alter_table("products", schema=None) as batch_op:
        for name in ("sku", "asset_id", "file_folded", "file", "key"):
            batch_op.drop_index(batch_op.f(f"ix_products_{name}"))
    op.drop_table("products")
