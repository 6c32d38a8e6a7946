"""List cursors: the creation time and id of the last row a page showed, opaque to callers.

One format for payments, payouts, refunds and events. A cursor that is not one the API
returned (not base64 JSON of an ISO time with a zone and an id) is a 400 ``invalid_cursor``.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from lipwa.errors import invalid


def encode_cursor(created_at: datetime, ident: str) -> str:
    raw = json.dumps([created_at.isoformat(), ident]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, ident = json.loads(raw)
        after = datetime.fromisoformat(created)
        if after.tzinfo is None:  # ours always carry one; a naive time cannot be compared
            raise ValueError(created)
        return after, str(ident)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise invalid("invalid_cursor", "cursor is not one this API returned", "cursor") from exc
