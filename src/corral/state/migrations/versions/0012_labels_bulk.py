"""Labels on instances; an operation's parent (bulk work: one operation with children).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instance_labels",
        sa.Column("instance_id", sa.Integer,
                  sa.ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("key", sa.String(63), primary_key=True),
        sa.Column("value", sa.String(63), nullable=False),
    )
    op.create_index("ix_instance_labels_key_value", "instance_labels", ["key", "value"])
    op.execute("ALTER TABLE operations ADD COLUMN parent VARCHAR(36)")
    op.create_index("ix_operations_parent", "operations", ["parent"])


def downgrade() -> None:
    op.drop_index("ix_operations_parent", "operations")
    op.execute("ALTER TABLE operations DROP COLUMN parent")
    op.drop_index("ix_instance_labels_key_value", "instance_labels")
    op.drop_table("instance_labels")
