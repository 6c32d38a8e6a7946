"""MoMo transactions export (CSV), built from the simulator ledger.

Columns, modelled on the MoMo partner-portal export (the real file's exact layout is not
published, so this is the simulator's own, stable form):

``Id``                     financialTransactionId
``External Transaction Id``  externalId of the order ("" if none)
``Date``                   completion time, UTC, ``YYYY-MM-DD HH:MM:SS``
``Status``                 ``SUCCESSFUL`` (only settled money reaches the ledger)
``Type``                   ``PAYMENT`` (request-to-pay), ``TRANSFER``, ``DEPOSIT``, ``REFUND``
``Provider Category``      ``Collection`` or ``Disbursement``
``Information``            payerMessage
``Note Message``           payeeNote
``From`` / ``From Name``   payer: the customer's partyId for a payment, else our account
``To`` / ``To Name``       payee: our account for a payment, else the customer's partyId
``Initiated By``           the API user that created the transaction
``On Behalf Of``           the target environment
``Amount``                 signed: positive = paid in, negative = paid out
``Currency``, ``Fee`` (always 0), ``Balance`` (account balance after this line)
"""

from __future__ import annotations

import csv
import io
import time
from typing import Any

from lipwa.simulator.core import StatementRow

COLUMNS = [
    "Id", "External Transaction Id", "Date", "Status", "Type", "Provider Category",
    "Information", "Note Message", "From", "From Name", "To", "To Name", "Initiated By",
    "On Behalf Of", "Amount", "Currency", "Fee", "Balance",
]
MERCHANT_NAME = "Lipwa Simulator Merchant"


def statement_csv(
    rows: list[StatementRow], records: dict[str, dict[str, Any]], product: str | None
) -> str:
    by_receipt = {r["financial_transaction_id"]: r for r in records.values()
                  if r["financial_transaction_id"]}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        parts = row.account.split(":")
        if row.provider != "momo" or len(parts) != 3 or product not in (None, parts[1]):
            continue
        writer.writerow(_line(row, parts[1], parts[2], by_receipt.get(row.receipt, {})))
    return out.getvalue()


def _line(row: StatementRow, product: str, currency: str, record: dict[str, Any]) -> list[str]:
    amount = row.paid_in - row.withdrawn
    ours, customer = f"{product}:{currency}", row.party
    sender, receiver = (customer, ours) if amount > 0 else (ours, customer)
    sender_name, receiver_name = ("", MERCHANT_NAME) if amount > 0 else (MERCHANT_NAME, "")
    return [
        row.receipt,
        row.reference,
        time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row.completed_at)),
        "SUCCESSFUL" if row.status == "Completed" else row.status.upper(),
        row.details,
        product.capitalize(),
        record.get("payer_message") or "",
        record.get("payee_note") or "",
        sender,
        sender_name,
        receiver,
        receiver_name,
        record.get("api_user", ""),
        record.get("target_environment", ""),
        str(amount),
        currency,
        "0",
        str(row.balance),
    ]
