"""The types services hand to their callers, named in one place.

They are defined where they are stored or made (``state/``, ``backup/``, ``templates/``);
the layers above services (``api/``, later ``web/``) import them from here, so they depend
on services alone and never reach past them (tests/unit/test_layers.py).
"""

from corral.backup.manifest import Manifest
from corral.backup.retention import Retention
from corral.cluster.store import Member, PublishedInstance
from corral.state.auditstore import AuditEntry, AuditFilter
from corral.state.backupstore import TargetRecord
from corral.state.migstore import MigrationRecord, RemoteRecord
from corral.state.storagestore import PoolRecord
from corral.state.store import InstanceRecord, OperationRecord
from corral.state.userstore import TokenRecord, UserRecord
from corral.templates.image import TemplateImage

__all__ = [
    "AuditEntry",
    "AuditFilter",
    "InstanceRecord",
    "Manifest",
    "Member",
    "MigrationRecord",
    "OperationRecord",
    "PoolRecord",
    "PublishedInstance",
    "RemoteRecord",
    "Retention",
    "TargetRecord",
    "TemplateImage",
    "TokenRecord",
    "UserRecord",
]
