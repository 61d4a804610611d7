"""Backup schedules: the time zone of their daily time and their next run (UTC).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE backup_schedules ADD COLUMN tz VARCHAR(64)")
    op.execute("ALTER TABLE backup_schedules ADD COLUMN next_run DATETIME")
    # last_run was the host's local time until now; every time in the database is UTC.
    bind = op.get_bind()
    rows = bind.execute(sa.text(
        "SELECT instance, last_run FROM backup_schedules WHERE last_run IS NOT NULL")).all()
    for instance, last_run in rows:
        local = last_run if isinstance(last_run, datetime) else datetime.fromisoformat(last_run)
        utc = local.astimezone(UTC).replace(tzinfo=None)  # naive: taken as local time
        bind.execute(sa.text("UPDATE backup_schedules SET last_run = :v WHERE instance = :i"),
                     {"v": utc.strftime("%Y-%m-%d %H:%M:%S.%f"), "i": instance})


def downgrade() -> None:
    op.execute("ALTER TABLE backup_schedules DROP COLUMN next_run")
    op.execute("ALTER TABLE backup_schedules DROP COLUMN tz")
