"""Retired instance ids: when each deleted id left, so it stays out of use for a while.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retired_ids",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("retired_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("retired_ids")
