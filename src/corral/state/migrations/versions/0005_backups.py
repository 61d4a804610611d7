"""Snapshots (a tree per instance), backup targets, backup schedules.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "snapshots",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("instance_id", sa.Integer, nullable=False, index=True),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("parent", sa.String(32), nullable=True),
        sa.Column("memory", sa.Boolean, nullable=False),
        sa.Column("consistency", sa.Text, nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("instance_id", "name"),
    )
    op.create_table(
        "snapshot_heads",
        sa.Column("instance_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("snapshot_id", sa.String(32), nullable=True),
    )
    op.create_table(
        "backup_targets",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("key_file", sa.Text, nullable=True),
        sa.Column("access_key", sa.Text, nullable=True),
        sa.Column("secret_key", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "backup_schedules",
        sa.Column("instance", sa.String(63), primary_key=True),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("daily_at", sa.String(5), nullable=False),
        sa.Column("keep_last", sa.Integer, nullable=False),
        sa.Column("keep_daily", sa.Integer, nullable=False),
        sa.Column("keep_weekly", sa.Integer, nullable=False),
        sa.Column("last_run", sa.DateTime, nullable=True),
    )


def downgrade() -> None:
    for table in ("backup_schedules", "backup_targets", "snapshot_heads", "snapshots"):
        op.drop_table(table)
