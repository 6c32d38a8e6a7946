"""Identifiers with a type prefix (``pay_…``, ``evt_…``): sortable by creation time."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rest = divmod(number, 36)
        chars.append(_ALPHABET[rest])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """``prefix_`` + 9 chars of milliseconds + 16 random chars (≈ 82 bits)."""
    millis = int(time.time() * 1000)
    random_part = int.from_bytes(os.urandom(11), "big")
    return f"{prefix}_{_base36(millis, 9)}{_base36(random_part, 16)}"
