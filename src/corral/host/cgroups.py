"""Which cgroup layout the host runs (v1, v2 or hybrid) and where each controller lives.

The layout is detected, never assumed: ``parse_layout`` is pure (it reads the text of
``/proc/mounts`` and, for cgroup2 mounts, the text of their ``cgroup.controllers``), and
``read_layout`` feeds it from the running host.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

PROC_MOUNTS = Path("/proc/mounts")

# Options of a v1 cgroup mount that are not controller names.
_V1_NON_CONTROLLER_OPTIONS = frozenset(
    {"rw", "ro", "nosuid", "nodev", "noexec", "relatime", "noatime", "strictatime",
     "clone_children", "noprefix", "xattr", "cpuset_v2_mode", "favordynmods"}
)


class CgroupVersion(StrEnum):
    V1 = "v1"
    V2 = "v2"
    HYBRID = "hybrid"  # v1 controllers plus a cgroup2 mount (usually /sys/fs/cgroup/unified)
    NONE = "none"


@dataclass(frozen=True)
class CgroupLayout:
    """Where the host's cgroup hierarchies are mounted and which controllers each holds."""

    version: CgroupVersion
    v1: Mapping[str, Path] = field(default_factory=dict)
    """Controller (or ``name=...`` hierarchy) -> mount point of its v1 hierarchy."""
    v2_mount: Path | None = None
    v2_controllers: frozenset[str] = frozenset()
    """Controllers enabled on the cgroup2 hierarchy (its root ``cgroup.controllers``)."""

    def controller_version(self, controller: str) -> CgroupVersion | None:
        """Which hierarchy handles ``controller``: v1 wins, as the kernel binds it there."""
        if controller in self.v1:
            return CgroupVersion.V1
        if controller in self.v2_controllers:
            return CgroupVersion.V2
        return None

    def controllers(self) -> dict[str, str]:
        """Controller -> 'v1' or 'v2', for ``corral host info``."""
        found = {name: CgroupVersion.V2.value for name in self.v2_controllers}
        found.update({name: CgroupVersion.V1.value for name in self.v1 if "=" not in name})
        return dict(sorted(found.items()))


def _unescape(path: str) -> str:
    """/proc/mounts escapes space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        path = path.replace(code, char)
    return path


def parse_layout(
    mounts_text: str, v2_controllers: Callable[[Path], str] | Mapping[Path, str]
) -> CgroupLayout:
    """Layout from the text of /proc/mounts.

    ``v2_controllers`` gives the text of ``cgroup.controllers`` at a cgroup2 mount point
    (a mapping for tests, a reader on a host).
    """
    v1: dict[str, Path] = {}
    v2_mount: Path | None = None
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        _source, target, fstype, options = fields[:4]
        if fstype == "cgroup":
            for option in options.split(","):
                if option not in _V1_NON_CONTROLLER_OPTIONS and not option.startswith(
                    "release_agent="
                ):
                    v1.setdefault(option, Path(_unescape(target)))
        elif fstype == "cgroup2" and v2_mount is None:
            v2_mount = Path(_unescape(target))
    controllers: frozenset[str] = frozenset()
    if v2_mount is not None:
        if isinstance(v2_controllers, Mapping):
            text = v2_controllers.get(v2_mount, "")
        else:
            text = v2_controllers(v2_mount)
        # A controller bound to a v1 hierarchy cannot be active on v2 at the same time.
        controllers = frozenset(text.split()) - frozenset(v1)
    real_v1 = [name for name in v1 if not name.startswith("name=")]
    if real_v1 and v2_mount is not None:
        version = CgroupVersion.HYBRID
    elif real_v1:
        version = CgroupVersion.V1
    elif v2_mount is not None:
        version = CgroupVersion.V2
    else:
        version = CgroupVersion.NONE
    return CgroupLayout(version=version, v1=v1, v2_mount=v2_mount, v2_controllers=controllers)


def _read_controllers(mount: Path) -> str:
    try:
        return (mount / "cgroup.controllers").read_text()
    except OSError:
        return ""


def read_layout(mounts: Path = PROC_MOUNTS) -> CgroupLayout:
    """The running host's cgroup layout."""
    return parse_layout(mounts.read_text(), _read_controllers)


_HOST_LAYOUT: list[CgroupLayout] = []


def host_layout() -> CgroupLayout:
    """``read_layout`` once per process, for the drivers' start, stop and stats paths (it
    parsed /proc/mounts on every container start: ~0.4 ms here). The host's cgroup mounts
    are made at boot; a daemon started before they change reads them again when restarted
    (``corral host info`` always reads them afresh)."""
    if not _HOST_LAYOUT:
        _HOST_LAYOUT.append(read_layout())
    return _HOST_LAYOUT[0]
