"""Each operation's log lines in the daemon's database (the only code building their queries)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from corral.state.database import Database


@dataclass(frozen=True)
class LogLine:
    seq: int  # 0, 1, … within the operation
    time: float  # Unix seconds
    level: str  # debug, info, warning, error, critical
    logger: str
    message: str


class OperationLogStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, operation_id: str, lines: Sequence[LogLine]) -> None:
        if not lines:
            return
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO operation_logs (operation_id, seq, time, level, logger, "
                "message) VALUES (?, ?, ?, ?, ?, ?)",
                [(operation_id, ln.seq, ln.time, ln.level, ln.logger, ln.message)
                 for ln in lines])

    def lines(self, operation_id: str) -> list[LogLine]:
        return [LogLine(*row) for row in self.db.all(
            "SELECT seq, time, level, logger, message FROM operation_logs "
            "WHERE operation_id = ? ORDER BY seq", (operation_id,))]

    def prune(self, before: float) -> int:
        """Delete the lines logged before ``before`` (Unix seconds); how many."""
        return self.db.execute("DELETE FROM operation_logs WHERE time < ?", (before,))
