"""Paired remote hosts and migration records.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "remotes",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("token", sa.String(512), nullable=False),
        sa.Column("fingerprint", sa.String(80), nullable=False),
        sa.Column("cert_pem", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "migrations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("instance", sa.String(63), nullable=False, index=True),
        sa.Column("instance_id", sa.Integer, nullable=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("peer", sa.String(2048), nullable=False),
        sa.Column("path", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(200), nullable=False),
        sa.Column("operation", sa.String(36), nullable=True),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("migrations")
    op.drop_table("remotes")
