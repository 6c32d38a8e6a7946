"""A JSON object from a request (metadata, settings) that can be stored and sent back.

Python's JSON parser takes ``NaN`` and ``Infinity``, which are not JSON: such a value would
be stored, then fail when the answer is rendered, after the provider was called. So they
are refused with the rest of the bad input, before anything is written. So is a NUL
character, which PostgreSQL cannot store.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator


def _check(value: Any, path: str) -> None:
    where = f" at {path}" if path else ""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a JSON number{where}")
    if isinstance(value, str) and "\x00" in value:
        raise ValueError(f"text may not hold a NUL character{where}")
    if isinstance(value, dict):
        for key, item in value.items():
            _check(key, path)
            _check(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")


def _storable(value: dict[str, Any]) -> dict[str, Any]:
    _check(value, "")
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_storable)]
