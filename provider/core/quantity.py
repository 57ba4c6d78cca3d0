"""Kubernetes resource quantities, compared by value.

The API server rewrites quantities into a canonical form (``cpu: 0.5`` comes
back as ``"500m"``, ``memory: 1024Mi`` as ``"1Gi"``, ``cpu: 1`` as ``"1"``).
The matcher therefore compares quantities at known quantity paths by their
exact decimal value. Only the grammar of ``resource.Quantity`` is accepted;
anything else is not a quantity and is compared as plain text.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

# Longer text is not a plausible quantity and is compared literally.
MAX_QUANTITY_CHARS = 64
# Exponents beyond this are rejected so Decimal arithmetic stays cheap.
MAX_EXPONENT = 64

_GRAMMAR = re.compile(
    r"(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE](?P<exp>[+-]?[0-9]{1,3}))?"
)

_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse_quantity(value: Any) -> Decimal | None:
    """The exact value of a quantity (string, int or float), or None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if abs(value) >= 10**MAX_EXPONENT:
            return None
        return Decimal(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        text = repr(value)
    elif isinstance(value, str):
        text = value
    else:
        return None
    if len(text) > MAX_QUANTITY_CHARS:
        return None
    m = _GRAMMAR.fullmatch(text)
    if m is None:
        return None
    try:
        number = Decimal(m["number"])
    except InvalidOperation:  # pragma: no cover - the grammar admits only valid numbers
        return None
    suffix = m["suffix"]
    if suffix in _BINARY:
        return number * (Decimal(2) ** _BINARY[suffix])
    if suffix in _DECIMAL:
        return number.scaleb(_DECIMAL[suffix])
    if m["exp"] is not None:
        exponent = int(m["exp"])
        if abs(exponent) > MAX_EXPONENT:
            return None
        return number.scaleb(exponent)
    return number


def same_quantity(a: Any, b: Any) -> bool:
    """True when both are quantities of equal value (``"0.5"`` == ``"500m"``)."""
    qa = parse_quantity(a)
    if qa is None:
        return False
    qb = parse_quantity(b)
    return qb is not None and qa == qb
