"""Client calls for snapshots and backups (over a ``CorralClient``'s connection)."""

from __future__ import annotations

from typing import Any

from corral.client.client import CorralClient
from corral.wire.backups import (
    BackupModel,
    BackupRequest,
    PruneModel,
    PruneRequest,
    RestoreRequest,
    ScheduleModel,
    ScheduleRequest,
    SnapshotRequest,
    SnapshotTreeModel,
    TargetModel,
    TargetRequest,
    VerifyModel,
    VerifyRequest,
)
from corral.wire.models import OperationModel


class BackupCalls:
    def __init__(self, client: CorralClient) -> None:
        self.c = client

    def _params(self, target: str, key_file: str | None, **more: Any) -> dict[str, Any]:
        params = {"target": target, **{k: v for k, v in more.items() if v is not None}}
        if key_file:
            params["key_file"] = key_file
        return params

    # Snapshots
    def snapshots(self, ref: str) -> SnapshotTreeModel:
        return self.c._model(SnapshotTreeModel, "GET", f"/api/v1/instances/{ref}/snapshots")

    def snapshot(self, ref: str, name: str, memory: bool = False) -> OperationModel:
        body = SnapshotRequest(name=name, memory=memory).model_dump()
        return self.c._model(OperationModel, "POST", f"/api/v1/instances/{ref}/snapshots",
                             json=body)

    def revert(self, ref: str, name: str, disk_only: bool = False) -> OperationModel:
        return self.c._model(OperationModel, "POST",
                             f"/api/v1/instances/{ref}/snapshots/{name}/revert",
                             params={"disk_only": "true"} if disk_only else None)

    def delete_snapshot(self, ref: str, name: str) -> None:
        self.c._request_empty("DELETE", f"/api/v1/instances/{ref}/snapshots/{name}")

    # Targets
    def targets(self) -> list[TargetModel]:
        return self.c._models(TargetModel, "GET", "/api/v1/backup-targets")

    def add_target(self, request: TargetRequest) -> TargetModel:
        return self.c._model(TargetModel, "POST", "/api/v1/backup-targets",
                             json=request.model_dump())

    def remove_target(self, name: str) -> None:
        self.c._request_empty("DELETE", f"/api/v1/backup-targets/{name}")

    # Backups
    def backup(self, instance: str, target: str, key_file: str | None = None) -> OperationModel:
        body = BackupRequest(instance=instance, target=target, key_file=key_file).model_dump()
        return self.c._model(OperationModel, "POST", "/api/v1/backups", json=body)

    def backups(self, target: str, instance: str | None = None,
                key_file: str | None = None) -> list[BackupModel]:
        return self.c._models(BackupModel, "GET", "/api/v1/backups",
                              params=self._params(target, key_file, instance=instance))

    def backup_info(self, target: str, backup_id: str,
                    key_file: str | None = None) -> BackupModel:
        return self.c._model(BackupModel, "GET", f"/api/v1/backups/{backup_id}",
                             params=self._params(target, key_file))

    def verify(self, request: VerifyRequest) -> OperationModel:
        return self.c._model(OperationModel, "POST", "/api/v1/backups/verify",
                             json=request.model_dump())

    def verify_report(self, op_id: str) -> VerifyModel:
        return self.c._model(VerifyModel, "GET", f"/api/v1/backups/verify/{op_id}")

    def delete_backup(self, target: str, backup_id: str, key_file: str | None = None) -> None:
        self.c._request_empty("DELETE", f"/api/v1/backups/{backup_id}",
                              params=self._params(target, key_file))

    def prune(self, request: PruneRequest) -> PruneModel:
        return self.c._model(PruneModel, "POST", "/api/v1/backups/prune",
                             json=request.model_dump())

    def restore(self, backup_id: str, request: RestoreRequest) -> OperationModel:
        return self.c._model(OperationModel, "POST", f"/api/v1/backups/{backup_id}/restore",
                             json=request.model_dump())

    # Schedules
    def schedules(self) -> list[ScheduleModel]:
        return self.c._models(ScheduleModel, "GET", "/api/v1/backup-schedules")

    def set_schedule(self, instance: str, request: ScheduleRequest) -> ScheduleModel:
        return self.c._model(ScheduleModel, "PUT", f"/api/v1/backup-schedules/{instance}",
                             json=request.model_dump())

    def remove_schedule(self, instance: str, target: str | None = None) -> None:
        self.c._request_empty("DELETE", f"/api/v1/backup-schedules/{instance}",
                              params={"target": target} if target is not None else None)
