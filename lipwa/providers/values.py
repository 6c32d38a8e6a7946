"""Tolerant readers for values in provider JSON (callbacks, results, status answers).

Providers send the same field as a number or a string, padded or empty: these read it, or
give ``None``, never raise. Pure functions, shared by the M-Pesa and MoMo parsers.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation


def text(value: object) -> str | None:
    """A string or integer as stripped text; ``None`` for empty, booleans and anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    return None


def decimal(value: object) -> Decimal | None:
    """A JSON number or numeric string as Decimal, via ``str`` (``1.0`` stays ``1.0``)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None
