"""History for graphs (per-minute and per-hour samples) and each operation's log lines.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per instance, step (60: a minute, 3600: an hour) and bucket start (Unix time).
    # Rates are per second over the time the bucket covered; memory is a gauge.
    op.create_table(
        "history_samples",
        sa.Column("instance_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("step", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seconds", sa.Float, nullable=False),  # how much of it the readings covered
        sa.Column("cpu_percent", sa.Float, nullable=False),
        sa.Column("memory_used", sa.Integer, nullable=False),
        sa.Column("memory_total", sa.Integer, nullable=False),
        sa.Column("disk_read_bps", sa.Float, nullable=False),
        sa.Column("disk_write_bps", sa.Float, nullable=False),
        sa.Column("net_rx_bps", sa.Float, nullable=False),
        sa.Column("net_tx_bps", sa.Float, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index("history_samples_age", "history_samples", ["step", "ts"])
    op.create_table(
        "history_traffic",
        sa.Column("instance_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("step", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("class", sa.Text, primary_key=True),
        sa.Column("direction", sa.Text, primary_key=True),
        sa.Column("bps", sa.Float, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index("history_traffic_age", "history_traffic", ["step", "ts"])
    op.create_table(
        "operation_logs",
        sa.Column("operation_id", sa.Text, primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("level", sa.Text, nullable=False),
        sa.Column("logger", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index("operation_logs_age", "operation_logs", ["time"])


def downgrade() -> None:
    op.drop_index("operation_logs_age", "operation_logs")
    op.drop_table("operation_logs")
    op.drop_index("history_traffic_age", "history_traffic")
    op.drop_table("history_traffic")
    op.drop_index("history_samples_age", "history_samples")
    op.drop_table("history_samples")
