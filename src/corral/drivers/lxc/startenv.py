"""The environment ``lxc-start`` runs in: the usual one with a PATH that lacks the shadow
tools (newuidmap, newgidmap).

Why: liblxc writes an unprivileged container's id maps through those tools whenever it finds
them on PATH (idmap_utils.c, lxc_map_ids): a ``sh -c`` and a setuid helper for the uid map
and again for the gid map, on every start -- four processes, ~4-5 ms of the host's CPU per
container and ~30 ms of the start's own time under load, to write two lines that root may
write itself. Without them on PATH it writes /proc/<pid>/uid_map and gid_map directly.
What shadow would have checked, that the range is root's own in /etc/subuid and /etc/subgid,
Corral checked before: the map it configures is root's range from those files
(host/idmap.root_idmap), so no other user can be handed the same ids.

What stays the same: the hooks set their own PATH (config.HOOK_SHELL) and so find every tool
as before; the container's init gets LXC's clean environment either way; the other LXC tools
(lxc-attach, lxc-checkpoint, lxc-stop) run with the daemon's PATH.
"""

from __future__ import annotations

import functools
import os

from corral.drivers.lxc.config import TOOL_PATH

SHADOW_TOOLS = ("newuidmap", "newgidmap")

@functools.cache
def start_path(search: str = TOOL_PATH) -> str:
    """``search`` without the directories that hold a shadow tool (kept once computed)."""
    return ":".join(d for d in search.split(":")
                    if d and not any(os.path.exists(os.path.join(d, tool))
                                     for tool in SHADOW_TOOLS))


def start_env() -> dict[str, str]:
    """The environment for ``lxc-start``: the daemon's, with ``start_path()`` as PATH."""
    return dict(os.environ, PATH=start_path())
