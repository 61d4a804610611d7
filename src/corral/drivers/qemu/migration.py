"""Migration hooks of the QEMU driver: a running VM moves live (migrate.py: every disk the
guest has mirrored over NBD, then RAM pre-copy); a stopped one by copy. This module only
adapts migrate.py's functions to ``MigrationHooks`` (drivers/migration.py), so the QMP side
can change on its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from corral.domain.errors import HostFailure
from corral.domain.instance import InstanceSpec
from corral.drivers.migration import (
    CopyOnly,
    LiveEndpoints,
    LiveOffer,
    LiveSource,
    LiveStats,
    MigrationPath,
    Report,
    StreamTls,
)
from corral.drivers.qemu.driver import QemuDriver
from corral.templates.image import TemplateImage

if TYPE_CHECKING:
    from corral.drivers.qemu import migrate


class QemuLive:
    """``LiveSource`` over migrate.LiveSource."""

    def __init__(self, spec: InstanceSpec, offer: LiveOffer) -> None:
        from corral.drivers.qemu.migrate import LiveSource as QmpSource

        self._source: migrate.LiveSource = QmpSource(spec, offer.disks, _required(offer))

    def mirror(self, ends: LiveEndpoints, bandwidth: int | None, report: Report) -> None:
        self._source.mirror(ends.nbd_host, ends.nbd_port, dict(ends.exports), bandwidth, report)

    def migrate(self, ends: LiveEndpoints, bandwidth: int | None, downtime_ms: int,
                report: Report) -> None:
        self._source.migrate(ends.migrate_uri, bandwidth, downtime_ms, report)

    def release_disk(self) -> None:
        self._source.release_disk()

    def rollback(self, resume: bool) -> list[str]:
        return self._source.rollback(resume)

    def stats(self) -> LiveStats:
        r = self._source.result
        return LiveStats(stopped_at=r.stopped_at, runtime_downtime_ms=r.qemu_downtime_ms,
                         disk_bytes=r.disk_bytes, ram_bytes=r.ram_bytes, log=r.log)

    def close(self) -> None:
        self._source.close()


class QemuMigration(CopyOnly):
    paths = frozenset({MigrationPath.LIVE, MigrationPath.PRECOPY, MigrationPath.OFFLINE})

    def __init__(self, driver: QemuDriver) -> None:
        self.driver = driver

    def why(self, path: MigrationPath) -> str:
        if path is MigrationPath.LIVE:
            return "QEMU live migration: NBD disk mirror, then RAM pre-copy"
        return super().why(path)

    def live_offer(self, spec: InstanceSpec) -> LiveOffer:
        from corral.drivers.qemu.migrate import attached_disks, source_boot_memory

        return LiveOffer(boot_memory=source_boot_memory(spec), disks=attached_disks(spec))

    def live_source(self, spec: InstanceSpec, offer: LiveOffer) -> LiveSource:
        return QemuLive(spec, offer)

    def recover_source(self, spec: InstanceSpec, resume: bool) -> list[str]:
        from corral.drivers.qemu.migrate import recover_source

        return recover_source(spec, resume=resume)

    def start_incoming(self, spec: InstanceSpec, template: TemplateImage, listen_host: str,
                       offer: LiveOffer) -> LiveEndpoints:
        from corral.drivers.qemu.migrate import start_incoming

        ends = start_incoming(self.driver, spec, template, listen_host, offer.boot_memory,
                              offer.disks, _required(offer))
        return LiveEndpoints(ends.nbd_host, ends.nbd_port, ends.exports, ends.migrate_uri)

    def finish_incoming(self, spec: InstanceSpec, offer: LiveOffer) -> float:
        from corral.drivers.qemu.migrate import finish_incoming

        return finish_incoming(spec, offer.disks)

    def after_resume(self, spec: InstanceSpec) -> None:
        from corral.drivers.qemu.migrate import resumed_incoming

        resumed_incoming(spec)


def _required(offer: LiveOffer) -> StreamTls:
    """Corral never moves a guest's disks or RAM in clear text between hosts."""
    if offer.tls is None:
        raise HostFailure("a live migration needs the hosts' TLS credentials (none given)")
    return offer.tls
