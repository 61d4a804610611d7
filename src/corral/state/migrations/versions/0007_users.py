"""Users (API tokens stored as hashes), instance owners, who requested an operation.

Revision ID: 0007
Revises: 0006
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
        "users",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    # A plain ADD COLUMN (SQLite allows REFERENCES there when the default is NULL): no copy
    # of the table. It makes SQLite refuse an unknown owner and removing an owning user.
    op.execute("ALTER TABLE instances ADD COLUMN owner VARCHAR(63) REFERENCES users(name)")
    op.create_index("ix_instances_owner", "instances", ["owner"])
    op.execute("ALTER TABLE operations ADD COLUMN requested_by VARCHAR(63)")
    op.create_index("ix_operations_requested_by", "operations", ["requested_by"])


def downgrade() -> None:
    op.drop_index("ix_operations_requested_by", "operations")
    op.execute("ALTER TABLE operations DROP COLUMN requested_by")
    op.drop_index("ix_instances_owner", "instances")
    with op.batch_alter_table("instances") as batch:  # a column in a foreign key: a copy
        batch.drop_column("owner")
    op.drop_table("users")
