"""Migration of instances between hosts, both sides of it.

``service``: ``MigrationService``, what the API and the daemon call; ``source``: one
outgoing run (reserve → copy or live mirror → commit → clean up, with its undo stack);
``target``: incoming reservations (reserve, receive disk and files, commit, abort);
``recovery``: the target's lease watchdog and the roll-back at daemon start. The file work
both sides share is in ``corral.migration``.
"""

from corral.migration.files import NoSpace
from corral.services.migration.service import MigrationService

__all__ = ["MigrationService", "NoSpace"]
