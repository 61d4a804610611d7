"""Snapshot, backup target and backup schedule tables (migrations 0005, 0008).
Change them only together with a new migration."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from corral.state.models import Base


class SnapshotRow(Base):
    __tablename__ = "snapshots"
    __table_args__ = (UniqueConstraint("instance_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    instance_id: Mapped[int] = mapped_column(Integer, nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    parent: Mapped[str | None] = mapped_column(String(32), nullable=True)
    memory: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    consistency: Mapped[str] = mapped_column(Text, nullable=False, default="")
    method: Mapped[str] = mapped_column(String(32), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class SnapshotHeadRow(Base):
    """The snapshot an instance's current state descends from (the next snapshot's parent)."""

    __tablename__ = "snapshot_heads"

    instance_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    snapshot_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


class BackupTargetRow(Base):
    __tablename__ = "backup_targets"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    key_file: Mapped[str | None] = mapped_column(Text, nullable=True)
    access_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    secret_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class BackupScheduleRow(Base):
    __tablename__ = "backup_schedules"

    instance: Mapped[str] = mapped_column(String(63), primary_key=True)
    target: Mapped[str] = mapped_column(Text, nullable=False)
    daily_at: Mapped[str] = mapped_column(String(5), nullable=False)  # HH:MM in ``tz``
    tz: Mapped[str | None] = mapped_column(String(64), nullable=True)  # None: host's zone
    keep_last: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    keep_daily: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    keep_weekly: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_run: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)  # UTC
    next_run: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)  # UTC
