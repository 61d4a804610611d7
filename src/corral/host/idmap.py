"""Subordinate uid/gid ranges (/etc/subuid, /etc/subgid) and whether user namespaces work.

Unprivileged containers map uid/gid 0..count-1 inside onto ``start..start+count-1`` on the
host. Parsing is pure; ``ensure_root_range`` is a host setup step that appends
``root:100000:65536`` to both files when root has no range yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")
MAX_USER_NAMESPACES = Path("/proc/sys/user/max_user_namespaces")

DEFAULT_START = 100000
DEFAULT_COUNT = 65536
CONTAINER_IDS = 65536
"""Ids a container needs mapped: 0..65535, so ``nobody`` (65534) exists inside."""


@dataclass(frozen=True)
class IdRange:
    start: int
    count: int

    @property
    def end(self) -> int:
        """One past the last id of the range."""
        return self.start + self.count


@dataclass(frozen=True)
class IdMap:
    """The host ids a container's ids 0..count-1 map onto."""

    uid: IdRange
    gid: IdRange


def parse_subid(text: str, user: str = "root", uid: int = 0) -> list[IdRange]:
    """Ranges for ``user`` (by name or by numeric uid) in the text of /etc/subuid or subgid."""
    ranges: list[IdRange] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 3:
            continue
        owner, start, count = parts
        if owner not in (user, str(uid)):
            continue
        try:
            found = IdRange(int(start), int(count))
        except ValueError:
            continue
        if found.start >= 0 and found.count > 0:
            ranges.append(found)
    return ranges


def pick_range(ranges: list[IdRange], needed: int = CONTAINER_IDS) -> IdRange | None:
    """The first range with at least ``needed`` ids, cut to exactly ``needed``."""
    for candidate in ranges:
        if candidate.count >= needed:
            return IdRange(candidate.start, needed)
    return None


def root_idmap(subuid: Path = SUBUID, subgid: Path = SUBGID) -> IdMap | None:
    """The id map unprivileged containers use, or None when root has no usable range."""
    try:
        uid = pick_range(parse_subid(subuid.read_text()))
        gid = pick_range(parse_subid(subgid.read_text()))
    except OSError:
        return None
    if uid is None or gid is None:
        return None
    return IdMap(uid=uid, gid=gid)


def ensure_root_range(
    subuid: Path = SUBUID,
    subgid: Path = SUBGID,
    start: int = DEFAULT_START,
    count: int = DEFAULT_COUNT,
) -> IdMap:
    """Host setup: give root ``start:count`` in both files unless it has a usable range."""
    for path in (subuid, subgid):
        text = path.read_text() if path.exists() else ""
        if pick_range(parse_subid(text)) is not None:
            continue
        prefix = "" if not text or text.endswith("\n") else "\n"
        with path.open("a") as handle:
            handle.write(f"{prefix}root:{start}:{count}\n")
    found = root_idmap(subuid, subgid)
    if found is None:  # pragma: no cover - only if the files changed under us
        raise RuntimeError(f"{subuid} / {subgid} still give root no id range")
    return found


def user_namespaces_allowed(path: Path = MAX_USER_NAMESPACES) -> bool:
    """Whether the kernel lets us create user namespaces (root ignores the unprivileged
    ``kernel.unprivileged_userns_clone`` switch; ``max_user_namespaces`` still applies)."""
    try:
        return int(path.read_text().strip()) > 0
    except (OSError, ValueError):
        return False


def unprivileged_possible(
    subuid: Path = SUBUID, subgid: Path = SUBGID, max_userns: Path = MAX_USER_NAMESPACES
) -> tuple[bool, str]:
    """Whether unprivileged containers can run here, and why not when they cannot."""
    if not user_namespaces_allowed(max_userns):
        return False, f"user namespaces are disabled ({max_userns} is 0 or missing)"
    if root_idmap(subuid, subgid) is None:
        return False, (
            f"root has no subordinate id range of {CONTAINER_IDS} ids in {subuid} and "
            f"{subgid}; run host setup (adds root:{DEFAULT_START}:{DEFAULT_COUNT})"
        )
    return True, ""
