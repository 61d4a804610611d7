"""Bulk work on many instances (pure): the actions, name patterns, per-item outcomes."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from corral.domain.errors import InvalidInput

MAX_ITEMS = 1000
"""Most items one bulk request may name (a brace range or --count beyond it is refused)."""
DEFAULT_PARALLEL = 4
MAX_PARALLEL = 64


class BulkAction(StrEnum):
    CREATE = "create"
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    DELETE = "delete"
    SNAPSHOT = "snapshot"
    BACKUP = "backup"
    EXEC = "exec"
    MIGRATE = "migrate"
    """To ``target`` (a member or a paired remote); none: the member placement picks."""

    @property
    def operation(self) -> str:
        """The parent operation's action name (``operation list`` shows it)."""
        return f"bulk-{self.value}"


class ItemStatus(StrEnum):
    """An item's result: done; failed (with why); skipped (already so, or not attempted
    after a cancel or a --fail-fast stop)."""

    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class ItemOutcome:
    name: str
    status: ItemStatus
    message: str = ""


@dataclass(frozen=True)
class Summary:
    total: int
    ok: int
    failed: int
    skipped: int

    @property
    def succeeded(self) -> bool:
        """No item failed (skipped ones -- already in the asked state -- are no failure)."""
        return self.failed == 0

    def __str__(self) -> str:
        parts = [f"{self.ok} ok"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        return f"{', '.join(parts)} of {self.total}"


def summarize(outcomes: Iterable[ItemOutcome]) -> Summary:
    counts = dict.fromkeys(ItemStatus, 0)
    total = 0
    for outcome in outcomes:
        counts[outcome.status] += 1
        total += 1
    return Summary(total, counts[ItemStatus.OK], counts[ItemStatus.FAILED],
                   counts[ItemStatus.SKIPPED])


def exit_code(summary: Summary) -> int:
    """0 when no item failed, else 1."""
    return 0 if summary.succeeded else 1


_GROUP = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)(?:\.\.(\d+))?$")


def _alternatives(body: str, pattern: str) -> list[str]:
    found = _RANGE.match(body)
    if found:
        first, last = int(found.group(1)), int(found.group(2))
        step = int(found.group(3) or 1)
        if step == 0:
            raise InvalidInput(f"'{pattern}': a range's step must not be 0")
        if abs(last - first) // step + 1 > MAX_ITEMS:
            raise InvalidInput(f"'{pattern}' names more than {MAX_ITEMS} instances")
        # {01..10}: zero-padded as bash does, to the wider bound's width
        ends = (found.group(1).lstrip("-"), found.group(2).lstrip("-"))
        width = max(len(e) for e in ends) if any(
            len(e) > 1 and e.startswith("0") for e in ends) else 0
        direction = 1 if last >= first else -1
        values = range(first, last + direction, step * direction)
        return [str(v).zfill(width) if width else str(v) for v in values]
    if "," in body:
        return body.split(",")
    raise InvalidInput(f"'{pattern}': a brace group is {{FIRST..LAST}} or {{a,b,...}}, "
                       f"not {{{body}}}")


def expand_braces(pattern: str) -> list[str]:
    """``web-{1..3}`` -> web-1, web-2, web-3; ``{a,b}-{1..2}`` -> a-1, a-2, b-1, b-2
    (bash's order); a name without braces is itself. Refused beyond ``MAX_ITEMS``."""
    groups = list(_GROUP.finditer(pattern))
    if not groups:
        if "{" in pattern or "}" in pattern:
            raise InvalidInput(f"'{pattern}' has an unbalanced brace")
        return [pattern]
    pieces, options, at = [], [], 0
    for group in groups:
        pieces.append(pattern[at:group.start()])
        options.append(_alternatives(group.group(1), pattern))
        at = group.end()
    tail = pattern[at:]
    if "{" in tail or "}" in tail or any("{" in p or "}" in p for p in pieces):
        raise InvalidInput(f"'{pattern}' has an unbalanced brace")
    count = 1
    for choice in options:
        count *= len(choice)
    if count > MAX_ITEMS:
        raise InvalidInput(f"'{pattern}' names more than {MAX_ITEMS} instances")
    names = []
    for combo in itertools.product(*options):
        names.append("".join(p + c for p, c in zip(pieces, combo, strict=True)) + tail)
    return names


def numbered(pattern: str, count: int, first: int = 1) -> list[str]:
    """``--count``: ``web-{n}`` (or ``web``, read as ``web-{n}``) numbered from ``first``."""
    if count < 1 or count > MAX_ITEMS:
        raise InvalidInput(f"--count must be between 1 and {MAX_ITEMS}")
    if first < 0:
        raise InvalidInput("--first must be 0 or more")
    template = _count_template(pattern)
    return [template.replace("{n}", str(first + i)) for i in range(count)]


def next_number(pattern: str, existing: Iterable[str]) -> int:
    """Where a ``--count`` without ``--first`` starts: after the highest number an existing
    name already has in ``pattern``'s place (``web-7`` taken: 8), else 1 — so a second
    ``create web --count 5`` adds web-6 … web-10 instead of failing on web-1."""
    head, _, tail = _count_template(pattern).partition("{n}")
    taken = [int(name[len(head):len(name) - len(tail)]) for name in existing
             if name.startswith(head) and name.endswith(tail)
             and name[len(head):len(name) - len(tail)].isdigit()
             and len(name) > len(head) + len(tail)]
    return max(taken, default=0) + 1


def _count_template(pattern: str) -> str:
    return pattern if "{n}" in pattern else pattern + "-{n}"


def expand_names(patterns: Iterable[str]) -> list[str]:
    """Every pattern expanded, in order, each name once; refused beyond ``MAX_ITEMS``."""
    seen: dict[str, None] = {}
    for pattern in patterns:
        for name in expand_braces(pattern):
            seen.setdefault(name, None)
    if len(seen) > MAX_ITEMS:
        raise InvalidInput(f"more than {MAX_ITEMS} instances in one request")
    return list(seen)


def check_parallel(parallel: int) -> int:
    if not 1 <= parallel <= MAX_PARALLEL:
        raise InvalidInput(f"--parallel must be between 1 and {MAX_PARALLEL}")
    return parallel
