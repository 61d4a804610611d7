"""Storage tables (migration 0003). Change them only together with a new migration."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from corral.state.models import Base


class PoolRow(Base):
    __tablename__ = "storage_pools"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    driver: Mapped[str] = mapped_column(String(16), nullable=False)
    path: Mapped[str] = mapped_column(String(4096), nullable=False)
    source: Mapped[str | None] = mapped_column(String(4096), nullable=True)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    is_default: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class DiskRow(Base):
    __tablename__ = "instance_disks"
    __table_args__ = (UniqueConstraint("instance_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[int] = mapped_column(Integer, nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(32), nullable=False)
    idx: Mapped[int] = mapped_column(Integer, nullable=False)
    pool: Mapped[str] = mapped_column(String(63), ForeignKey("storage_pools.name"),
                                      nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    pending_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    mount: Mapped[str | None] = mapped_column(String(4096), nullable=True)
