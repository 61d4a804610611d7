"""Errors a user (or the host) can cause, each with a stable code for the API."""

from __future__ import annotations


class CorralError(Exception):
    """Base class: ``code`` maps to an HTTP status, ``message`` is shown to the user."""

    code = "error"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(CorralError):
    code = "invalid"
    status = 400


class NotFound(CorralError):
    code = "not_found"
    status = 404


class Conflict(CorralError):
    code = "conflict"
    status = 409


class Busy(Conflict):
    code = "busy"


class CheckpointRefused(Conflict):
    """A checkpoint refused before anything was frozen or dumped (a process it would lose):
    the instance runs on, unchanged, so a move can still take another path."""


class Unsupported(CorralError):
    """The host or the driver lacks a feature the request needs."""

    code = "unsupported"
    status = 422


class HostFailure(CorralError):
    """A privileged call or a runtime failed; the message carries what it said."""

    code = "host_failure"
    status = 500


class Forbidden(CorralError):
    """The caller is known but its role does not allow the request."""

    code = "forbidden"
    status = 403


def reason(exc: BaseException) -> str:
    """What went wrong, for a message: the exception's text, or its type's name when it has
    none (``TimeoutError()``, many ``httpx`` errors: an exception object is always true, so
    ``exc or name`` would give an empty text)."""
    return str(exc) or type(exc).__name__
