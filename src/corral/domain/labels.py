"""Labels on instances and the selectors that pick instances by them (pure).

A label is ``key=value``. A selector is terms joined by commas, all of which must hold
(AND): ``k=v`` (the label is v), ``k!=v`` (the label is absent or not v), ``k`` (the label
exists), ``!k`` (it does not).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from corral.domain.errors import InvalidInput

_KEY = re.compile(r"^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$")
_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")
MAX_LABELS = 64


def validate_key(key: str) -> str:
    if not _KEY.match(key):
        raise InvalidInput(
            f"label key '{key}' must be 1-63 lower-case letters, digits, '.', '_', '/' or '-', "
            "starting and ending with a letter or digit")
    return key


def validate_value(key: str, value: str) -> str:
    if not _VALUE.match(value):
        raise InvalidInput(
            f"label value '{value}' of '{key}' must be at most 63 letters, digits, '.', '_' "
            "or '-', starting and ending with a letter or digit")
    return value


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """``["role=web", "tier=1"]`` -> ``{"role": "web", "tier": "1"}`` (validated)."""
    found: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput(f"'{item}' is not key=value")
        found[validate_key(key.strip())] = validate_value(key, value.strip())
    if not found:
        raise InvalidInput("give at least one key=value")
    return found


def check_labels(labels: Mapping[str, str]) -> None:
    """The whole set an instance would carry."""
    for key, value in labels.items():
        validate_key(key)
        validate_value(key, value)
    if len(labels) > MAX_LABELS:
        raise InvalidInput(f"an instance carries at most {MAX_LABELS} labels")


class Op(StrEnum):
    EQ = "="
    NE = "!="
    EXISTS = "exists"
    ABSENT = "!exists"


@dataclass(frozen=True)
class Term:
    key: str
    op: Op
    value: str = ""

    def holds(self, labels: Mapping[str, str]) -> bool:
        found = labels.get(self.key)
        if self.op is Op.EQ:
            return found == self.value
        if self.op is Op.NE:
            return found != self.value
        if self.op is Op.EXISTS:
            return found is not None
        return found is None

    def __str__(self) -> str:
        if self.op is Op.EXISTS:
            return self.key
        if self.op is Op.ABSENT:
            return "!" + self.key
        return f"{self.key}{self.op.value}{self.value}"


@dataclass(frozen=True)
class Selector:
    terms: tuple[Term, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(term.holds(labels) for term in self.terms)

    def __str__(self) -> str:
        return ",".join(str(t) for t in self.terms)


def parse_selector(text: str) -> Selector:
    """``role=web,tier!=db,backup,!legacy`` -> a Selector; InvalidInput if malformed."""
    terms = []
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            raise InvalidInput(f"selector '{text}' has an empty term (k=v, k!=v, k or !k, "
                               "joined by commas)")
        if "!=" in part:
            key, value = part.split("!=", 1)
            terms.append(Term(validate_key(key.strip()), Op.NE,
                              validate_value(key, value.strip())))
        elif "=" in part:
            key, value = part.split("=", 1)
            key = key.strip().removesuffix("=")  # k==v reads as k=v
            value = value.strip().removeprefix("=")
            terms.append(Term(validate_key(key), Op.EQ, validate_value(key, value)))
        elif part.startswith("!"):
            terms.append(Term(validate_key(part[1:].strip()), Op.ABSENT))
        else:
            terms.append(Term(validate_key(part), Op.EXISTS))
    return Selector(tuple(terms))
