"""Storage pools and instance disks.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "storage_pools",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("driver", sa.String(16), nullable=False),
        sa.Column("path", sa.String(4096), nullable=False),
        sa.Column("source", sa.String(4096), nullable=True),
        sa.Column("size", sa.BigInteger, nullable=True),
        sa.Column("is_default", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "instance_disks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("instance_id", sa.Integer, nullable=False, index=True),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("pool", sa.String(63), sa.ForeignKey("storage_pools.name"), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("pending_size", sa.BigInteger, nullable=True),
        sa.UniqueConstraint("instance_id", "name"),
    )


def downgrade() -> None:
    op.drop_table("instance_disks")
    op.drop_table("storage_pools")
