"""corrald's log: structured entries in systemd's journal where it runs, JSON lines otherwise.

Every entry carries, when there is one, the instance, the operation and the user the work
runs for (``services/scope.py`` and the API's ``requester``): in the journal as the fields
INSTANCE, OPERATION and USER (``journalctl -t corrald INSTANCE=web1``), in a JSON line as
the keys ``instance``, ``operation`` and ``user``.

Where the log goes (``--log-to``): ``journal`` (the native protocol on
/run/systemd/journal/socket, ``host/journal.py``), ``stderr`` (JSON lines; the setup
script's background start appends them to /var/log/corrald.log), or ``auto``: the journal
if its socket exists, else stderr. ``--log-file`` writes the JSON lines to a file instead of
stderr (reopened when logrotate moves it).

The configured level filters what is written; the ``corral`` loggers make INFO records in
any case, for each operation's own log (``services/oplog.py``).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from datetime import UTC, datetime
from pathlib import Path

from corral.host import journal
from corral.services.operations import requester
from corral.services.scope import current

PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}
"""syslog priorities of Python's levels (the journal's PRIORITY field)."""
IDENTIFIER = "corrald"


def context() -> dict[str, str]:
    """The instance, operation and user of the work running here (those there are)."""
    found: dict[str, str] = {}
    scope = current.get()
    if scope is not None:
        found["operation"] = scope.operation
        if scope.instance:
            found["instance"] = scope.instance
        if scope.user:
            found["user"] = scope.user
    else:
        user = requester.get()
        if user:
            found["user"] = user
    return found


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **context(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class JournalHandler(logging.Handler):
    """Each record as one journal entry with its fields."""

    def __init__(self, sink: journal.Journal) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        fields = {
            "MESSAGE": message,
            "PRIORITY": str(PRIORITY.get(record.levelname, 6)),
            "SYSLOG_IDENTIFIER": IDENTIFIER,
            "LOGGER": record.name,
            "CODE_FILE": record.pathname,
            "CODE_LINE": str(record.lineno),
            "CODE_FUNC": record.funcName,
        }
        fields.update({key.upper(): value for key, value in context().items()})
        self.sink.send(fields)

    def close(self) -> None:
        self.sink.close()
        super().close()


def handler_for(target: str, log_file: str = "",
                socket: Path = journal.SOCKET) -> logging.Handler:
    """The handler ``--log-to`` and ``--log-file`` choose."""
    if target == "journal" or (target == "auto" and journal.available(socket)):
        return JournalHandler(journal.Journal(socket))
    handler: logging.Handler
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.WatchedFileHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    return handler


def setup(level: str, target: str = "auto", log_file: str = "",
          socket: Path = journal.SOCKET) -> logging.Handler:
    handler = handler_for(target, log_file, socket)
    handler.setLevel(level.upper())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(min(logging.getLevelName(level.upper()), logging.INFO))
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
