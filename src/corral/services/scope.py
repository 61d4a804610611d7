"""What work runs for, as context variables: the operation (if any) and the user.

Set by ``OperationManager`` around an operation's work and by the API for each request; read
by the operation log and by corrald's log handlers, which put them on every entry (the
journal's INSTANCE, OPERATION and USER fields)."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    operation: str
    action: str
    instance: str | None
    user: str | None


current: ContextVar[Scope | None] = ContextVar("corral_operation", default=None)
"""The operation whose work runs in this context (None: none)."""
