"""Migration hooks of the fake driver: its instances move by copy (``offline``, and
``precopy`` while "running": the state file says so, nothing runs)."""

from __future__ import annotations

from corral.domain.instance import Kind
from corral.drivers.migration import CopyOnly, MigrationPath, without_criu


class FakeMigration(CopyOnly):
    def __init__(self, kind: Kind) -> None:
        self.kind = kind

    def why(self, path: MigrationPath) -> str:
        if path is MigrationPath.PRECOPY and self.kind is Kind.CT:
            return without_criu("not a real container")
        return super().why(path)
