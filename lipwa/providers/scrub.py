"""Provider error messages, made safe to store and show: no secret, no token, bounded."""

from __future__ import annotations

import re
from typing import Final

# Long opaque runs (tokens, keys, JWT segments) never belong in a message we pass on...
_OPAQUE: Final = re.compile(r"\b[A-Za-z0-9+/]{24,}={0,2}")
# ...but the providers' own long field names do, or messages like "Duplicate
# OriginatorConversationID" lose their meaning.
_PROTOCOL_WORDS: Final = frozenset(
    {
        "OriginatorConversationID",
        "OriginatorCoversationID",
        "OriginalConversationID",
        "RecieverIdentifierType",
        "ReceiverIdentifierType",
        "TransactionCompletedDateTime",
        "B2CUtilityAccountAvailableFunds",
        "B2CWorkingAccountAvailableFunds",
        "B2CRecipientIsRegisteredCustomer",
        "NOT_ALLOWED_TARGET_ENVIRONMENT",
        "INVALID_CALLBACK_URL_HOST",
        "COULD_NOT_PERFORM_TRANSACTION",
        "PAYEE_NOT_ALLOWED_TO_RECEIVE",
        "INTERNAL_PROCESSING_ERROR",
    }
)


def _redact(match: re.Match[str]) -> str:
    return match.group(0) if match.group(0) in _PROTOCOL_WORDS else "[REDACTED]"


def scrub(text: str, secrets: tuple[str, ...], limit: int) -> str:
    """Replace every known secret and any opaque token in ``text``; fold spaces; cut."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "[REDACTED]")
    text = _OPAQUE.sub(_redact, text)  # backstop: a token from some other call
    return " ".join(text.split())[:limit]
