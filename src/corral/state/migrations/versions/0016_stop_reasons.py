"""Why an instance stopped when Corral did not stop it (crashed guests), until its next start.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stop_reasons",
        sa.Column("instance_id", sa.Integer,
                  sa.ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("reason", sa.String(512), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("stop_reasons")
