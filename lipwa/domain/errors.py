"""The one exception the domain raises: bad input from a caller.

The API renders it as ``{"error": {"type": "invalid_request_error", "code", "message", "param"}}``.
Messages are written for the merchant's developer; they never echo secrets and never echo the raw
phone number back (phones are personal data and error messages end up in logs).
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Bad input: rendered by the API as an ``invalid_request_error``."""

    type = "invalid_request_error"

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param

    def to_dict(self) -> dict[str, Any]:
        """The public error object (the value of the ``error`` key)."""
        return {"type": self.type, "code": self.code, "message": self.message, "param": self.param}

    def __repr__(self) -> str:
        return f"DomainError(code={self.code!r}, message={self.message!r}, param={self.param!r})"
