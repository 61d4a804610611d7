"""Migration hooks of the LXC driver: a container moves by copy (``offline``, ``precopy``)
with its files shifted to the host uid root maps to, which the target must map the same;
what arrived becomes an LXC container by ``adopt`` (migrate.py). CRIU is only probed and
reported: restoring a checkpoint on the target is not implemented."""

from __future__ import annotations

from corral.domain.errors import Conflict
from corral.domain.instance import InstanceSpec
from corral.drivers.lxc.driver import LxcDriver
from corral.drivers.migration import CopyOnly, MigrationPath, without_criu
from corral.templates.image import TemplateImage


class LxcMigration(CopyOnly):
    def __init__(self, driver: LxcDriver) -> None:
        self.driver = driver

    def why(self, path: MigrationPath) -> str:
        if path is MigrationPath.PRECOPY:
            from corral.host import criu

            status = criu.probe()
            # where CRIU works, LXC still cannot restore a Corral container (known-gaps.md)
            return without_criu("checkpoint/restore of containers is not used yet"
                                if status.works else status.reason)
        return super().why(path)

    def idmap_start(self, spec: InstanceSpec) -> int | None:
        if spec.privileged:
            return None
        from corral.host.idmap import root_idmap

        found = root_idmap()
        return None if found is None else found.uid.start

    def check_arrival(self, idmap_start: int | None, privileged: bool) -> None:
        if idmap_start is None or privileged:
            return
        from corral.host.idmap import root_idmap

        here = root_idmap()
        if here is None or here.uid.start != idmap_start:
            raise Conflict(
                "the container's files are shifted to host uid "
                f"{idmap_start}; this host maps root to "
                f"{None if here is None else here.uid.start}"
            )

    def adopt(self, spec: InstanceSpec, template: TemplateImage) -> None:
        from corral.drivers.lxc.migrate import adopt

        adopt(self.driver, spec, template)
