"""Bodies of the bulk API (/api/v1/bulk) and of instance labels."""

from __future__ import annotations

from pydantic import BaseModel, Field

from corral.domain.bulk import DEFAULT_PARALLEL, MAX_PARALLEL, BulkAction


class BulkCreate(BaseModel):
    """What every instance of a bulk create is made from (as ``CreateRequest``)."""

    type: str
    template: str
    cpus: str | int | None = None
    memory: str | None = None
    disk: str | None = None
    privileged: bool = False
    start: bool = False
    resources: dict[str, str] = Field(default_factory=dict)
    pool: str | None = None
    owner: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    """Labels each new instance carries once made."""


class BulkRequestModel(BaseModel):
    """One action on many instances: ``names`` (for create: the new names, already
    expanded) or a label ``selector``; the answer is the parent operation."""

    action: BulkAction
    names: list[str] = Field(default_factory=list)
    selector: str | None = None
    parallel: int = Field(default=DEFAULT_PARALLEL, ge=1, le=MAX_PARALLEL)
    fail_fast: bool = False
    force: bool = False
    timeout: float | None = Field(default=None, ge=0)
    """stop/restart: seconds of grace (default 30); exec: the command's limit (None: none)."""
    argv: list[str] = Field(default_factory=list)
    """exec: the command."""
    snapshot: str | None = None
    """snapshot: the snapshot's name (the same for every instance)."""
    memory: bool = False
    target: str | None = None
    """backup: the target."""
    key_file: str | None = None
    create: BulkCreate | None = None


class LabelsModel(BaseModel):
    instance: str
    labels: dict[str, str]


class ChangeLabelsRequest(BaseModel):
    set: dict[str, str] = Field(default_factory=dict)
    unset: list[str] = Field(default_factory=list)
