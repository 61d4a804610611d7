"""Instance names are DNS labels; ids are numbers from 101 up (``ids.py`` chooses them)."""

from __future__ import annotations

import re

from corral.domain.errors import InvalidInput

_LABEL = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
FIRST_ID = 101


def is_decimal(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` is also true for '²' or '٣', which ``int`` refuses
    or reads as another number (the fuzzer's '/instances/²' was a 500)."""
    return text.isascii() and text.isdigit()


def validate_name(name: str, what: str = "instance") -> str:
    """Return ``name`` if it is a valid lower-case DNS label, else raise InvalidInput."""
    if not name:
        raise InvalidInput(f"{what} name must not be empty")
    if len(name) > 63:
        raise InvalidInput(f"{what} name '{name}' is longer than 63 characters")
    if name.isdigit():
        raise InvalidInput(f"{what} name '{name}' is all digits; digits alone name an id")
    if not _LABEL.match(name):
        raise InvalidInput(
            f"{what} name '{name}' is not a DNS label: use a-z, 0-9 and '-', "
            "start with a letter, do not end with '-'"
        )
    return name
