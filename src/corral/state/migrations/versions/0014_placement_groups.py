"""Placement groups of a host in no cluster (a cluster keeps them in etcd).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "placement_groups",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("rule", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "placement_group_members",
        sa.Column("instance", sa.String(63), primary_key=True),
        sa.Column("group_name", sa.String(63),
                  sa.ForeignKey("placement_groups.name", ondelete="CASCADE"), nullable=False),
        sa.Column("node", sa.String(63), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_placement_group_members_group", "placement_group_members",
                    ["group_name"])


def downgrade() -> None:
    op.drop_index("ix_placement_group_members_group", "placement_group_members")
    op.drop_table("placement_group_members")
    op.drop_table("placement_groups")
