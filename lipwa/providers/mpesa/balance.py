"""Daraja Account Balance on the wire (daraja.md §2.7).

The request is answered with the usual 4-field acceptance; the balances arrive later in a
``Result`` envelope at ResultURL, as one string::

    Working Account|KES|700000.00|700000.00|0.00|0.00&Utility Account|KES|228037.00|…

accounts joined by ``&``, each ``Name|Currency|n1|n2|n3|n4``. Which number is which is not
clearly documented: the first one is read as the available funds, all four are kept.
Pure functions, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from lipwa.providers.mpesa.results import ResultEnvelope
from lipwa.providers.mpesa.secured import SHORTCODE_IDENTIFIER, Initiator, remarks

ACCOUNT_BALANCE_PATH: Final = "/mpesa/accountbalance/v1/query"


def account_balance_body(
    initiator: Initiator, *, result_url: str, queue_timeout_url: str, remarks_text: str
) -> dict[str, Any]:
    return {
        "Initiator": initiator.name,
        "SecurityCredential": initiator.security_credential,
        "CommandID": "AccountBalance",
        "PartyA": initiator.shortcode,
        "IdentifierType": SHORTCODE_IDENTIFIER,
        "Remarks": remarks(remarks_text, "Balance"),
        "QueueTimeOutURL": queue_timeout_url,
        "ResultURL": result_url,
    }


@dataclass(frozen=True)
class BalanceLine:
    account: str  # "Working Account", "Utility Account", ...
    currency: str
    available: Decimal
    amounts: tuple[Decimal, ...]  # every number of the entry, in Daraja's order


def _number(text: str) -> Decimal | None:
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


def parse_balance_text(text: str) -> list[BalanceLine]:
    """The accounts of an ``AccountBalance`` value; malformed entries are skipped."""
    lines: list[BalanceLine] = []
    for entry in text.split("&"):
        parts = [p.strip() for p in entry.split("|")]
        if len(parts) < 3 or not parts[0]:
            continue
        numbers = [_number(p) for p in parts[2:]]
        if numbers[0] is None:
            continue
        amounts = tuple(n for n in numbers if n is not None)
        lines.append(BalanceLine(parts[0][:60], parts[1][:3].upper(), amounts[0], amounts))
    return lines


@dataclass(frozen=True)
class BalanceResult:
    ok: bool
    lines: list[BalanceLine]
    code: str
    message: str | None
    conversation_id: str | None
    originator_conversation_id: str | None


def read_balance_result(envelope: ResultEnvelope) -> BalanceResult:
    """A Result envelope of Account Balance: the lines on ResultCode 0, else the error."""
    raw = envelope.parameters.get("AccountBalance")
    lines = parse_balance_text(raw) if isinstance(raw, str) and envelope.code == "0" else []
    ok = envelope.code == "0" and bool(lines)
    message = envelope.description
    if envelope.code == "0" and not lines:
        message = "Daraja reported success without a readable AccountBalance"
    return BalanceResult(
        ok,
        lines,
        envelope.code,
        message,
        envelope.conversation_id,
        envelope.originator_conversation_id,
    )
