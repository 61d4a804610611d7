"""Migration hooks of the LXC driver: a container moves by copy (``offline``, ``precopy``)
with its files shifted to the host uid root maps to, which the target must map the same;
what arrived becomes an LXC container by ``adopt`` (migrate.py). A running container whose
checkpoint can be restored (``checkpoint.refusal``: CRIU works, an idmapped root can be made
for an unprivileged one, not systemd) and would hold all its processes (no exec's outside
init's tree: ``attached``) moves by ``checkpoint``: CRIU dump on the source, restore on the
target."""

from __future__ import annotations

from pathlib import Path

from corral.domain.errors import CheckpointRefused, Conflict
from corral.domain.instance import InstanceSpec
from corral.drivers.lxc.attached import attached_refusal
from corral.drivers.lxc.driver import LxcDriver
from corral.drivers.migration import CopyOnly, MigrationPath, without_criu
from corral.templates.image import TemplateImage


class LxcMigration(CopyOnly):
    paths = frozenset({MigrationPath.CHECKPOINT, MigrationPath.PRECOPY, MigrationPath.OFFLINE})

    def __init__(self, driver: LxcDriver) -> None:
        self.driver = driver

    def why(self, path: MigrationPath) -> str:
        if path is MigrationPath.CHECKPOINT:
            return ("checkpoint/restore: disk pre-copied while running, then CRIU dump "
                    "(frozen, stopped), final delta, restore on the target")
        if path is MigrationPath.PRECOPY:
            from corral.host import criu

            status = criu.probe()
            return without_criu("CRIU checkpoint/restore not possible" if status.works
                                else status.reason)
        return super().why(path)

    def checkpoint_refusal(self, spec: InstanceSpec) -> str | None:
        from corral.drivers.lxc import checkpoint

        return checkpoint.refusal(spec) or checkpoint.systemd_refusal(
            self.driver.status(spec).pid) or attached_refusal(self.driver, spec)

    def checkpoint(self, spec: InstanceSpec, directory: Path, *, stop: bool) -> None:
        from corral.drivers.lxc import checkpoint
        from corral.drivers.lxc.quiesce import hold_unmount, let_unmount

        # an exec started since the path was chosen: the move falls back (source.py's
        # trial dump, or the stopping one that skipped it) before anything is stopped
        why = attached_refusal(self.driver, spec)
        if why is not None:
            checkpoint.reattach_consoles(self.driver, spec)  # ``before_checkpoint``'s
            raise CheckpointRefused(why)

        # a stopping dump returns before the root is released: ``quiesce`` (or ``settle``)
        # makes the disks still while the migration sends the dump; the post-stop hooks
        # wait for that (``hold_unmount``)
        if stop:
            hold_unmount(spec)
        try:
            checkpoint.dump(self.driver, spec, directory, stop=stop, wait_release=False)
        except BaseException:
            if stop:
                let_unmount(spec)
            raise

    def before_checkpoint(self, spec: InstanceSpec) -> None:
        from corral.drivers.lxc import checkpoint

        checkpoint.detach_consoles(self.driver, spec)

    def dumped_recently(self, spec: InstanceSpec) -> bool:
        from corral.drivers.lxc import checkpoint

        return checkpoint.dumped_recently(self.driver, spec)

    def settle(self, spec: InstanceSpec) -> None:
        from corral.drivers.lxc import checkpoint
        from corral.drivers.lxc.quiesce import let_unmount

        let_unmount(spec)
        checkpoint.released(spec)

    def quiesce(self, spec: InstanceSpec) -> tuple[str, dict[str, float]]:
        from corral.drivers.lxc.quiesce import quiesce

        return quiesce(self.driver, spec)

    def restore(self, spec: InstanceSpec, template: TemplateImage, directory: Path) -> float:
        from corral.drivers.lxc import checkpoint

        del template  # the LXC configuration was written by ``adopt`` (or is the source's)
        return checkpoint.restore(self.driver, spec, directory)

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
