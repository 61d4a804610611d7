"""Web console sessions kept across a daemon restart (hashed secrets, wall-clock times).

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("secret_hash", sa.String(64), primary_key=True),
        sa.Column("user", sa.String(63), sa.ForeignKey("users.name", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("opened", sa.Float, nullable=False),
        sa.Column("seen", sa.Float, nullable=False),
    )
    op.create_index("ix_web_sessions_user", "web_sessions", ["user"])


def downgrade() -> None:
    op.drop_index("ix_web_sessions_user", "web_sessions")
    op.drop_table("web_sessions")
