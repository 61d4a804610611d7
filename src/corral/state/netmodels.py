"""Network tables (migration 0002). Change them only together with a new migration."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
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


class NetworkRow(Base):
    __tablename__ = "networks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(63), unique=True, nullable=False)
    type: Mapped[str] = mapped_column(String(16), nullable=False)
    subnets: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    gateways: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    pools: Mapped[list[list[str]]] = mapped_column(JSON, nullable=False)
    uplink: Mapped[str | None] = mapped_column(String(15), nullable=True)
    vlan: Mapped[int | None] = mapped_column(Integer, nullable=True)
    link_rate: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class NicRow(Base):
    __tablename__ = "nics"
    __table_args__ = (UniqueConstraint("instance_id", "idx"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[int] = mapped_column(Integer, nullable=False, index=True)
    idx: Mapped[int] = mapped_column(Integer, nullable=False)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), nullable=False)
    mac: Mapped[str] = mapped_column(String(17), unique=True, nullable=False)
    antispoof: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)


class NicAddressRow(Base):
    __tablename__ = "nic_addresses"
    __table_args__ = (UniqueConstraint("network_id", "address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    nic_id: Mapped[int] = mapped_column(ForeignKey("nics.id", ondelete="CASCADE"),
                                        nullable=False, index=True)
    network_id: Mapped[int] = mapped_column(Integer, nullable=False)
    address: Mapped[str] = mapped_column(String(45), nullable=False)


class TrafficClassRow(Base):
    __tablename__ = "traffic_classes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(31), unique=True, nullable=False)
    prefixes: Mapped[list[str]] = mapped_column(JSON, nullable=False)


class BandwidthRow(Base):
    __tablename__ = "bandwidth_rules"
    __table_args__ = (UniqueConstraint("instance_id", "traffic_class", "direction"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[int] = mapped_column(Integer, nullable=False, index=True)
    traffic_class: Mapped[str] = mapped_column(String(31), nullable=False)
    direction: Mapped[str] = mapped_column(String(3), nullable=False)
    rate: Mapped[int] = mapped_column(BigInteger, nullable=False)
    ceil: Mapped[int] = mapped_column(BigInteger, nullable=False)


class TrafficCounterRow(Base):
    """The last counter values read from the kernel: a host reboot resumes from these."""

    __tablename__ = "traffic_counters"

    family: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    instance_id: Mapped[int] = mapped_column(Integer, nullable=False, index=True)
    traffic_class: Mapped[str] = mapped_column(String(31), nullable=False)
    direction: Mapped[str] = mapped_column(String(3), nullable=False)
    packets: Mapped[int] = mapped_column(BigInteger, nullable=False)
    bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
