"""DomainError carries the public error object."""

from __future__ import annotations

from lipwa.domain.errors import DomainError


def test_domain_error_fields_and_rendering() -> None:
    error = DomainError("invalid_phone", "Send a mobile number.", param="phone")
    assert (error.code, error.message, error.param) == (
        "invalid_phone",
        "Send a mobile number.",
        "phone",
    )
    assert str(error) == "Send a mobile number."
    assert error.to_dict() == {
        "type": "invalid_request_error",
        "code": "invalid_phone",
        "message": "Send a mobile number.",
        "param": "phone",
    }
    assert DomainError("x", "y").param is None
    assert isinstance(error, Exception)
