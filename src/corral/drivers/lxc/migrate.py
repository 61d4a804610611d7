"""Moving a container between hosts, LXC's side.

Without CRIU a container moves as its disk: the ext4 image is pre-copied while it runs, the
container is stopped (a clean unmount makes the image consistent; a freeze would leave dirty
pages in the host's page cache, outside the image), the final delta is sent and the target
starts it. ``adopt`` writes the LXC configuration for an image that arrived that way.
CRIU is used only where ``criu check`` passes on both hosts; it is detected, not assumed.
"""

from __future__ import annotations

from corral.domain.instance import InstanceSpec
from corral.drivers.lxc.config import render_config
from corral.drivers.lxc.driver import LxcDriver, _check_reachable, lxc_name
from corral.templates.image import TemplateImage


def adopt(driver: LxcDriver, spec: InstanceSpec, template: TemplateImage) -> None:
    """Make LXC know a container whose image and files are already in ``spec.directory``."""
    config = driver.config_for(spec, template)
    if config.idmap is not None:
        _check_reachable(spec.directory, config.idmap.uid.start)
    container_dir = driver.lxcpath / lxc_name(spec)
    driver.lxcpath.mkdir(parents=True, exist_ok=True)
    container_dir.mkdir(mode=0o750, exist_ok=True)
    (container_dir / "config").write_text(render_config(config))
