"""Daraja C2B: register URLs, simulate a customer payment, validation and confirmation (§2.4).

Simulator choices where Daraja's behaviour is unconfirmed are listed in ``daraja``'s docstring.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response

from lipwa.simulator.daraja_wire import (
    BUY_GOODS_ONLINE,
    C2B_SHORTCODES,
    MAX_AMOUNT,
    NO_CALLBACK,
    PAYBILL_ONLINE,
    DarajaError,
    c2b_url,
    customer_name,
    invalid,
    masked,
    money,
    msisdn,
    shortcode,
    text,
    ts14,
    whole_amount,
)

if TYPE_CHECKING:
    from lipwa.simulator.daraja import Daraja


class C2bApi:
    """C2B handlers; registrations and records live on the owning ``Daraja``."""

    def __init__(self, daraja: Daraja) -> None:
        self.d = daraja

    # ----- C2B (§2.4) --------------------------------------------------------------------
    async def register(self, body: dict[str, Any]) -> Response:
        code = shortcode(body.get("ShortCode"), "ShortCode")
        response_type = body.get("ResponseType")
        if response_type not in ("Completed", "Cancelled"):
            raise invalid("ResponseType")
        confirmation = c2b_url(body.get("ConfirmationURL"), "ConfirmationURL")
        validation = c2b_url(body.get("ValidationURL"), "ValidationURL")
        if code not in C2B_SHORTCODES:
            raise invalid("ShortCode")
        # Sandbox semantics: re-registering simply replaces the URLs.
        self.d.c2b_urls[code] = {
            "response_type": str(response_type),
            "confirmation_url": confirmation,
            "validation_url": validation,
        }
        return JSONResponse(
            {
                "OriginatorCoversationID": self.d.ids.merchant_request(),
                "ResponseCode": "0",
                "ResponseDescription": "Success",
            }
        )

    async def simulate(self, body: dict[str, Any]) -> Response:
        code = shortcode(body.get("ShortCode"), "ShortCode")
        command = body.get("CommandID")
        if command not in (PAYBILL_ONLINE, BUY_GOODS_ONLINE):
            raise invalid("CommandID")
        amount = whole_amount(body.get("Amount"))
        if amount > MAX_AMOUNT:
            raise invalid("Amount")
        payer = msisdn(body.get("Msisdn"), "Msisdn")
        bill_ref = text(
            body.get("BillRefNumber"), "BillRefNumber", 20, required=False, numbers_ok=True
        )
        if code not in C2B_SHORTCODES:
            raise invalid("ShortCode")
        registration = self.d.c2b_urls.get(code)
        if registration is None:
            raise DarajaError(
                "500.003.1001",
                "Validation and Confirmation URLs are not registered for this ShortCode",
            )
        trans_id = self.d.ids.receipt()
        record: dict[str, Any] = {
            "type": "c2b",
            "status": "pending",
            "result_code": None,
            "result_desc": None,
            "receipt": trans_id,
            "trans_id": trans_id,
            "amount": amount,
            "phone": payer,
            "shortcode": code,
            "command_id": command,
            "bill_ref_number": bill_ref if command == PAYBILL_ONLINE else "",
            "registration": dict(registration),
            "validation": None,
            "third_party_trans_id": "",
            "callback_sent": False,
            "created_at": self.d.clock(),
            "completed_at": None,
        }
        self.d.records()[trans_id] = record
        self.d.later(lambda: self._flow(record))
        return JSONResponse(
            {
                "OriginatorCoversationID": self.d.ids.merchant_request(),
                "ResponseCode": "0",
                "ResponseDescription": "Accept the service request successfully.",
            }
        )

    def _payload(self, record: dict[str, Any], balance: str) -> dict[str, str]:
        """Validation/confirmation body: flat, every value a string (§2.4)."""
        first, _ = customer_name(record["phone"])
        paybill = record["command_id"] == PAYBILL_ONLINE
        return {
            "TransactionType": "Pay Bill" if paybill else "Buy Goods",
            "TransID": record["trans_id"],
            "TransTime": ts14(record["created_at"]),
            "TransAmount": money(record["amount"]),
            "BusinessShortCode": record["shortcode"],
            "BillRefNumber": record["bill_ref_number"],
            "InvoiceNumber": "",
            "OrgAccountBalance": balance,
            "ThirdPartyTransID": record["third_party_trans_id"],
            "MSISDN": masked(record["phone"]),
            "FirstName": first,
            "MiddleName": "",
            "LastName": "",
        }

    async def _flow(self, record: dict[str, Any]) -> None:
        trans_id = record["trans_id"]
        registration = record["registration"]
        if not self.d.sim.settings.c2b_external_validation:
            record["validation"] = None  # not asked: straight to the money and confirmation
            self._complete(record, "")
            return
        status, reply, problem = await self.d.sim.call_merchant(
            registration["validation_url"],
            self._payload(record, ""),
            wait_s=self.d.sim.settings.c2b_validation_timeout_s,
        )
        if not self.d.is_current(trans_id, record):
            return
        verdict, detail = _validation_verdict(status, reply)
        record["validation"] = {
            "status": status,
            "reply": _json_safe(reply),
            "error": problem,
            "verdict": verdict,
        }
        if verdict == "default":
            # No usable answer in time: the registered ResponseType decides (§2.4).
            verdict = "accept" if registration["response_type"] == "Completed" else "cancel"
        if verdict != "accept":
            record.update(
                status="rejected" if verdict == "reject" else "cancelled",
                result_code=detail or None,
                result_desc="Rejected by validation"
                if verdict == "reject"
                else "Validation unanswered; ResponseType Cancelled",
                completed_at=self.d.clock(),
            )
            return
        self._complete(record, detail)

    def _complete(self, record: dict[str, Any], third_party_trans_id: str) -> None:
        """The money lands in the shortcode, then the confirmation goes out."""
        trans_id = record["trans_id"]
        registration = record["registration"]
        record["third_party_trans_id"] = third_party_trans_id
        reason = "Pay Bill" if record["command_id"] == PAYBILL_ONLINE else "Buy Goods"
        balance = self.d.credit(
            f"mpesa:{record['shortcode']}",
            record["amount"],
            trans_id,
            reason,
            record["phone"],
            record["bill_ref_number"],
        )
        self.d.receipts[trans_id] = trans_id
        record.update(
            status="completed", result_code=0, result_desc="Success", completed_at=self.d.clock()
        )
        if self.d.override([trans_id, record["bill_ref_number"]], [record["phone"]]) == NO_CALLBACK:
            return
        self.d.sim.send_callback(
            "mpesa",
            "c2b_confirmation",
            trans_id,
            registration["confirmation_url"],
            self._payload(record, money(balance)),
        )
        record["callback_sent"] = True


def _json_safe(value: Any) -> Any:
    """The merchant's reply as stored for /_sim/transactions (which must stay valid JSON)."""
    try:
        json.dumps(value, allow_nan=False)
    except (ValueError, TypeError):
        return repr(value)
    return value


def _validation_verdict(status: int | None, reply: Any) -> tuple[str, str]:
    """("accept", ThirdPartyTransID) | ("reject", code) | ("default", "")."""
    if status is None or not 200 <= status < 300 or not isinstance(reply, dict):
        return "default", ""
    if "ResultCode" not in reply:
        return "default", ""
    code = str(reply["ResultCode"]).strip()[:32]
    if code and code.strip("0") == "":  # "0", 0, "00000000" all mean accept (§5.4.9)
        third = reply.get("ThirdPartyTransID")
        return "accept", str(third)[:64] if isinstance(third, (str, int)) else ""
    return "reject", code
