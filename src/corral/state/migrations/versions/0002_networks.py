"""Networks, NICs and their addresses, traffic classes, bandwidth rules, traffic counters.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "networks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("subnets", sa.JSON, nullable=False),
        sa.Column("gateways", sa.JSON, nullable=False),
        sa.Column("pools", sa.JSON, nullable=False),
        sa.Column("uplink", sa.String(15), nullable=True),
        sa.Column("vlan", sa.Integer, nullable=True),
        sa.Column("link_rate", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "nics",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("instance_id", sa.Integer, nullable=False, index=True),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("network_id", sa.Integer, sa.ForeignKey("networks.id"), nullable=False),
        sa.Column("mac", sa.String(17), nullable=False, unique=True),
        sa.Column("antispoof", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.UniqueConstraint("instance_id", "idx"),
    )
    op.create_table(
        "nic_addresses",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("nic_id", sa.Integer, sa.ForeignKey("nics.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("network_id", sa.Integer, nullable=False),
        sa.Column("address", sa.String(45), nullable=False),
        sa.UniqueConstraint("network_id", "address"),
    )
    op.create_table(
        "traffic_classes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(31), nullable=False, unique=True),
        sa.Column("prefixes", sa.JSON, nullable=False),
    )
    op.create_table(
        "bandwidth_rules",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("instance_id", sa.Integer, nullable=False, index=True),
        sa.Column("traffic_class", sa.String(31), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("rate", sa.BigInteger, nullable=False),
        sa.Column("ceil", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("instance_id", "traffic_class", "direction"),
    )
    op.create_table(
        "traffic_counters",
        sa.Column("family", sa.String(8), primary_key=True),
        sa.Column("name", sa.String(80), primary_key=True),
        sa.Column("instance_id", sa.Integer, nullable=False, index=True),
        sa.Column("traffic_class", sa.String(31), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("packets", sa.BigInteger, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("traffic_counters", "bandwidth_rules", "traffic_classes", "nic_addresses",
                  "nics", "networks"):
        op.drop_table(table)
