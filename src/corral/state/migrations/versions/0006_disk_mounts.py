"""Data disks: where a container sees each one (``instance_disks.mount``).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instance_disks") as batch:
        batch.add_column(sa.Column("mount", sa.String(4096), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instance_disks") as batch:
        batch.drop_column("mount")
