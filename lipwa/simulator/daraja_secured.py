"""Daraja's initiator-secured APIs: B2C, Transaction Status, Account Balance, Reversal.

All four answer synchronously with the same 4-field acceptance and send a ``Result`` envelope
to ``ResultURL`` once processed (after ``prompt_seconds``). The initiator's
SecurityCredential is checked then, not in the sync answer: a bad one ends as ResultCode
2001, as on the real platform.

Simulator choices where Daraja's behaviour is unconfirmed:

- QueueTimeOutURL notice (override ``queue_timeout``): a ``Result`` envelope with
  ``ResultType`` 1, ``ResultCode`` 26 "System busy. The service request timed out in the
  queue.", the request's ids, a placeholder TransactionID, no ResultParameters. Nothing is
  executed (no money moves); Transaction Status then reports the B2C as ``Expired``.
- B2C amounts below 10 / above 250,000 are accepted synchronously and fail with ResultCode
  2 / 3 (the official B2C result codes); decimals are a sync ``Invalid Amount``.
- B2C payee whose number ends in ``0040`` → ResultCode 2040 (unregistered customer).
- B2C/balance PartyA that is not the initiator's shortcode → ResultCode 21.
- Transaction Status for an unknown receipt / conversation id → ``R000002`` "The
  OriginalTransactionID is invalid." (borrowed from Reversal).
- Reversal: Amount above the original → ResultCode 25 "Invalid request parameters"; a smaller
  amount is a partial reversal (the receipt is then closed for further reversals). A B2C
  receipt → 2028 (B2C cannot be reversed, §2.5). ReceiverParty that did not receive the
  original → R000002. ``RecieverIdentifierType`` (Daraja's spelling) is required.
- Override ``duplicate_detected``: the request executes as usual, but the ResultURL callback is
  ResultCode 15 "Duplicate detected" with a placeholder TransactionID, as the answer to a
  repeat would be; Transaction Status reports what really happened.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response

from lipwa.simulator.daraja_wire import (
    B2C_SHORTCODE,
    DUPLICATE_DETECTED,
    DUPLICATE_OCID,
    INITIATOR_NAME,
    INITIATOR_PASSWORD,
    NO_CALLBACK,
    ORG_NAMES,
    PENDING_FOREVER,
    QUEUE_TIMEOUT,
    credential_matches,
    customer_name,
    digits,
    dotted,
    error,
    invalid,
    msisdn,
    shortcode,
    text,
    ts14,
    url,
    whole_amount,
)

if TYPE_CHECKING:
    from lipwa.simulator.daraja import Daraja

B2C_COMMANDS = ("BusinessPayment", "SalaryPayment", "PromotionPayment")
B2C_MIN, B2C_MAX = 10, 250_000
SUCCESS_DESC = "The service request is processed successfully."
INVALID_INITIATOR = (2001, "The initiator information is invalid.")
NOT_PERMITTED = (21, "The initiator is not allowed to initiate this request.")
ORIGINAL_INVALID = ("R000002", "The OriginalTransactionID is invalid.")
DUPLICATE_RESULT = (15, "Duplicate detected")
# Override name -> (ResultCode, ResultDesc) for B2C.
B2C_RESULTS: dict[str, tuple[int, str]] = {
    "success": (0, SUCCESS_DESC),
    "insufficient_funds": (1, "The balance is insufficient for the transaction."),
    "wrong_pin": INVALID_INITIATOR,
    "invalid_initiator": INVALID_INITIATOR,
    "unregistered_customer": (
        2040,
        "Credit Party customer type (Unregistered or Registered Customer) can't be supported "
        "by the service.",
    ),
}
ACCEPTED = "Accept the service request successfully."
RESULT_ROUTES = {
    "b2c": "b2cresults",
    "transaction_status": "tsresults",
    "account_balance": "abresults",
    "reversal": "reversalresults",
}


def _param(key: str, value: Any = None) -> dict[str, Any]:
    # Daraja leaves out ``Value`` for empty entries rather than sending null (§5.4.5).
    return {"Key": key} if value is None else {"Key": key, "Value": value}


def _account_line(name: str, amount: Decimal) -> str:
    return f"{name}|KES|{amount:.2f}|{amount:.2f}|0.00|0.00"


class SecuredApis:
    """Handlers for the secured family; state lives on the owning ``Daraja``."""

    def __init__(self, daraja: Daraja) -> None:
        self.d = daraja

    # ----- shared parts ------------------------------------------------------------------
    def _common(self, body: dict[str, Any], initiator_key: str) -> dict[str, Any]:
        """Fields every secured request carries, validated in Daraja's field order."""
        return {
            "initiator": text(body.get(initiator_key), initiator_key, 100, min_len=1),
            "credential": text(
                body.get("SecurityCredential"), "SecurityCredential", 4096, min_len=1
            ),
        }

    def _urls_and_remarks(self, body: dict[str, Any], remarks_required: bool) -> dict[str, Any]:
        return {
            "remarks": text(
                body.get("Remarks"),
                "Remarks",
                100,
                min_len=2 if remarks_required else 0,
                required=remarks_required,
            ),
            "queue_timeout_url": url(body.get("QueueTimeOutURL"), "QueueTimeOutURL"),
            "result_url": url(body.get("ResultURL"), "ResultURL"),
        }

    def _command(self, body: dict[str, Any], allowed: tuple[str, ...]) -> str:
        command = body.get("CommandID")
        if command not in allowed:
            raise invalid("CommandID")
        return str(command)

    def _identifier_type(self, body: dict[str, Any], key: str, allowed: set[str]) -> str:
        value = digits(body.get(key), key, 1, 2)
        if value not in allowed:
            raise invalid(key)
        return value

    def _initiator_ok(self, record: dict[str, Any]) -> bool:
        return record["initiator"] == INITIATOR_NAME and credential_matches(
            self.d.certificate.key, record["credential"], INITIATOR_PASSWORD
        )

    def _start(self, kind: str, body_fields: dict[str, Any], ocid: str | None = None) -> Response:
        """Store the record, schedule its processing, answer with the 4-field acceptance."""
        conversation = self.d.ids.conversation()
        originator = ocid or self.d.ids.originator_conversation()
        record: dict[str, Any] = {
            "type": kind,
            "status": "pending",
            "result_code": None,
            "result_desc": None,
            "receipt": None,
            "originator_conversation_id": originator,
            "conversation_id": conversation,
            "callback_sent": False,
            "created_at": self.d.clock(),
            "completed_at": None,
            **body_fields,
        }
        # B2C is keyed by the client's idempotency key; the others by our ConversationID.
        key = originator if kind == "b2c" else conversation
        record["key"] = key
        self.d.records()[key] = record
        self.d.later(lambda: self._process(record))
        return JSONResponse(
            {
                "OriginatorConversationID": originator,
                "ConversationID": conversation,
                "ResponseCode": "0",
                "ResponseDescription": ACCEPTED,
            }
        )

    def _envelope(
        self,
        record: dict[str, Any],
        code: int | str,
        desc: str,
        transaction_id: str,
        params: list[dict[str, Any]] | None = None,
        result_type: int | str = 0,
    ) -> dict[str, Any]:
        result: dict[str, Any] = {
            "ResultType": result_type,
            "ResultCode": code,
            "ResultDesc": desc,
            "OriginatorConversationID": record["originator_conversation_id"],
            "ConversationID": record["conversation_id"],
            "TransactionID": transaction_id,
        }
        if params is not None:
            result["ResultParameters"] = {"ResultParameter": params}
        result["ReferenceData"] = {
            "ReferenceItem": {
                "Key": "QueueTimeoutURL",
                "Value": "https://internalsandbox.safaricom.co.ke/mpesa/"
                f"{RESULT_ROUTES[record['type']]}/v1/submit",
            }
        }
        return {"Result": result}

    def _placeholder_id(self) -> str:
        return self.d.ids.receipt()[:3] + "0000000"

    def _process(self, record: dict[str, Any]) -> None:
        """Resolve one secured request: queue timeout, execute, then call back."""
        if not self.d.is_current(record["key"], record):
            return
        override = self.d.override(
            [
                record["originator_conversation_id"],
                record["conversation_id"],
                str(record.get("transaction_id") or ""),
            ],
            [str(record.get("party_b") or "")],
        )
        record["override"] = override
        if override == PENDING_FOREVER:
            return
        if override == QUEUE_TIMEOUT:
            self._queue_timeout(record)
            return
        handler = {
            "b2c": self._b2c_execute,
            "transaction_status": self._status_execute,
            "account_balance": self._balance_execute,
            "reversal": self._reversal_execute,
        }[record["type"]]
        body = handler(record, override)
        result = body["Result"]
        code = result["ResultCode"]
        record.update(
            status="completed" if str(code) == "0" else "failed",
            result_code=code,
            result_desc=result["ResultDesc"],
            completed_at=self.d.clock(),
        )
        if override == NO_CALLBACK:
            return
        if override == DUPLICATE_DETECTED:
            body = self._envelope(record, *DUPLICATE_RESULT, self._placeholder_id())
        self.d.sim.send_callback(
            "mpesa", f"{record['type']}_result", record["key"], record["result_url"], body
        )
        record["callback_sent"] = True

    def _queue_timeout(self, record: dict[str, Any]) -> None:
        desc = "System busy. The service request timed out in the queue."
        body = self._envelope(record, 26, desc, self._placeholder_id(), result_type=1)
        record.update(
            status="timeout", result_code=26, result_desc=desc, completed_at=self.d.clock()
        )
        self.d.sim.send_callback(
            "mpesa",
            f"{record['type']}_timeout",
            record["key"],
            record["queue_timeout_url"],
            body,
        )
        record["callback_sent"] = True

    # ----- B2C (§2.5) --------------------------------------------------------------------
    async def b2c(self, version: int, body: dict[str, Any]) -> Response:
        ocid: str | None = None
        if version >= 3:
            ocid = text(
                body.get("OriginatorConversationID"), "OriginatorConversationID", 100, min_len=1
            )
        fields = self._common(body, "InitiatorName")
        command = self._command(body, B2C_COMMANDS)
        amount = whole_amount(body.get("Amount"))
        party_a = shortcode(body.get("PartyA"), "PartyA")
        party_b = msisdn(body.get("PartyB"), "PartyB")
        fields.update(self._urls_and_remarks(body, remarks_required=True))
        # Daraja's sample spells it "Occassion"; some SDKs send "Occasion": take either.
        occasion_key = "Occassion" if "Occassion" in body else "Occasion"
        occasion = text(body.get(occasion_key), occasion_key, 100, required=False, numbers_ok=True)
        if ocid is not None and ocid in self.d.records():
            raise error(DUPLICATE_OCID)
        fields.update(
            command_id=command,
            amount=amount,
            party_a=party_a,
            party_b=party_b,
            occasion=occasion,
            version=version,
        )
        return self._start("b2c", fields, ocid)

    def _b2c_execute(self, record: dict[str, Any], override: str | None) -> dict[str, Any]:
        amount = record["amount"]
        utility = f"mpesa:{B2C_SHORTCODE}:utility"
        if not self._initiator_ok(record):
            code, desc = INVALID_INITIATOR
        elif record["party_a"] != B2C_SHORTCODE:
            code, desc = NOT_PERMITTED
        elif override in B2C_RESULTS:
            code, desc = B2C_RESULTS[str(override)]
        elif amount < B2C_MIN:
            code, desc = 2, "Declined due to limit rule: less than the minimum transaction amount."
        elif amount > B2C_MAX:
            code, desc = (
                3,
                ("Declined due to limit rule: greater than the maximum transaction amount."),
            )
        elif record["party_b"].endswith("0040"):
            code, desc = B2C_RESULTS["unregistered_customer"]
        elif self.d.balance(utility) < amount:
            code, desc = B2C_RESULTS["insufficient_funds"]
        else:
            code, desc = B2C_RESULTS["success"]
        if code != 0:
            return self._envelope(record, code, desc, self._placeholder_id())
        receipt = self.d.ids.receipt()
        record["receipt"] = receipt
        self.d.receipts[receipt] = record["key"]
        first, last = customer_name(record["party_b"])
        self.d.credit(
            utility,
            -amount,
            receipt,
            "Business Payment to Individual",
            record["party_b"],
            record["occasion"],
        )
        now = self.d.clock()
        params = [
            _param("TransactionAmount", amount),
            _param("TransactionReceipt", receipt),
            _param("ReceiverPartyPublicName", f"{record['party_b']} - {first} {last}".upper()),
            _param("TransactionCompletedDateTime", dotted(now)),
            _param("B2CUtilityAccountAvailableFunds", float(self.d.balance(utility))),
            _param(
                "B2CWorkingAccountAvailableFunds", float(self.d.balance(f"mpesa:{B2C_SHORTCODE}"))
            ),
            _param("B2CRecipientIsRegisteredCustomer", "Y"),
            _param(
                "B2CChargesPaidAccountAvailableFunds",
                float(self.d.balance(f"mpesa:{B2C_SHORTCODE}:charges")),
            ),
        ]
        return self._envelope(record, 0, SUCCESS_DESC, receipt, params)

    # ----- Transaction Status (§2.6) -----------------------------------------------------
    async def transaction_status(self, body: dict[str, Any]) -> Response:
        fields = self._common(body, "Initiator")
        fields["command_id"] = self._command(body, ("TransactionStatusQuery",))
        transaction_id = text(
            body.get("TransactionID"), "TransactionID", 64, required=False, numbers_ok=True
        )
        original = text(
            body.get("OriginalConversationID"), "OriginalConversationID", 100, required=False
        )
        if not transaction_id and not original:
            raise invalid("TransactionID")
        fields["party_a"] = digits(body.get("PartyA"), "PartyA", 5, 12)
        fields["identifier_type"] = self._identifier_type(body, "IdentifierType", {"1", "2", "4"})
        fields.update(self._urls_and_remarks(body, remarks_required=False))
        fields["occasion"] = text(
            body.get("Occasion"), "Occasion", 100, required=False, numbers_ok=True
        )
        fields.update(transaction_id=transaction_id, original_conversation_id=original)
        return self._start("transaction_status", fields)

    def _find_original(self, record: dict[str, Any]) -> dict[str, Any] | None:
        records = self.d.records()
        if record["transaction_id"]:
            found = records.get(self.d.receipts.get(record["transaction_id"], ""))
            if found is not None:
                return found
        if record["original_conversation_id"]:
            found = records.get(record["original_conversation_id"])
            if found is not None and found["type"] == "b2c":
                return found
        return None

    def _status_execute(self, record: dict[str, Any], override: str | None) -> dict[str, Any]:
        if not self._initiator_ok(record):
            return self._envelope(record, *INVALID_INITIATOR, self._placeholder_id())
        target = self._find_original(record)
        if target is None:
            return self._envelope(record, *ORIGINAL_INVALID, self._placeholder_id())
        body = self._envelope(
            record, 0, SUCCESS_DESC, self.d.ids.receipt(), self._status_params(target)
        )
        if record["occasion"]:
            body["Result"]["ReferenceData"] = {
                "ReferenceItem": {"Key": "Occasion", "Value": record["occasion"]}
            }
        return body

    def _status_params(self, target: dict[str, Any]) -> list[dict[str, Any]]:
        kind = target["type"]
        status = {
            "completed": "Completed",
            "reversed": "Completed",
            "failed": "Declined",
            "rejected": "Declined",
            "cancelled": "Cancelled",
            "timeout": "Expired",
            "pending": "Pending Authorized",
        }.get(target["status"], "Initiated")
        customer = target["party_b"] if kind == "b2c" else target["phone"]
        org = target["party_a"] if kind == "b2c" else target["shortcode"]
        first, last = customer_name(customer)
        customer_party = f"{customer} - {first} {last}"
        org_party = f"{org} - {ORG_NAMES.get(org, org)}"
        outgoing = kind in ("b2c", "reversal")  # money leaves the organisation
        debit, credit = (org_party, customer_party) if outgoing else (customer_party, org_party)
        reason = {
            "b2c": "Business Payment to Individual",
            "stk": "Pay Bill Online",
            "c2b": "Pay Bill",
            "reversal": "Reversal",
        }.get(kind, kind)
        finished = target.get("completed_at")
        return [
            _param("DebitPartyName", debit),
            _param("CreditPartyName", credit),
            _param("OriginatorConversationID", target.get("originator_conversation_id")),
            _param("InitiatedTime", int(ts14(target["created_at"]))),
            _param("DebitAccountType", "Utility Account" if outgoing else "MMF Account"),
            _param("DebitPartyCharges"),
            _param("TransactionReason"),
            _param("ReasonType", reason),
            _param("TransactionStatus", status),
            _param("FinalisedTime", int(ts14(finished)) if finished else None),
            _param("Amount", float(target["amount"])),
            _param("ConversationID", target.get("conversation_id")),
            _param("ReceiptNo", target.get("receipt")),
        ]

    # ----- Account Balance (§2.7) --------------------------------------------------------
    async def account_balance(self, body: dict[str, Any]) -> Response:
        fields = self._common(body, "Initiator")
        fields["command_id"] = self._command(body, ("AccountBalance",))
        fields["party_a"] = shortcode(body.get("PartyA"), "PartyA")
        fields["identifier_type"] = self._identifier_type(body, "IdentifierType", {"1", "2", "4"})
        fields.update(self._urls_and_remarks(body, remarks_required=False))
        return self._start("account_balance", fields)

    def _balance_execute(self, record: dict[str, Any], override: str | None) -> dict[str, Any]:
        if not self._initiator_ok(record):
            return self._envelope(record, *INVALID_INITIATOR, self._placeholder_id())
        code = record["party_a"]
        if code not in ORG_NAMES:
            return self._envelope(record, *NOT_PERMITTED, self._placeholder_id())
        base = f"mpesa:{code}"
        line = "&".join(
            [
                _account_line("Working Account", self.d.balance(base)),
                _account_line("Utility Account", self.d.balance(f"{base}:utility")),
                _account_line("Charges Paid Account", self.d.balance(f"{base}:charges")),
            ]
        )
        params = [
            _param("AccountBalance", line),
            _param("BOCompletedTime", int(ts14(self.d.clock()))),
        ]
        # The official Account Balance sample sends ResultType/ResultCode as strings.
        return self._envelope(
            record, "0", SUCCESS_DESC, self.d.ids.receipt(), params, result_type="0"
        )

    # ----- Reversal (§2.8) ---------------------------------------------------------------
    async def reversal(self, body: dict[str, Any]) -> Response:
        fields = self._common(body, "Initiator")
        fields["command_id"] = self._command(body, ("TransactionReversal",))
        fields["transaction_id"] = text(body.get("TransactionID"), "TransactionID", 64, min_len=1)
        fields["amount"] = whole_amount(body.get("Amount"))
        fields["receiver_party"] = digits(body.get("ReceiverParty"), "ReceiverParty", 5, 12)
        # Daraja's own misspelling is the key it reads; the correct spelling is not enough.
        fields["identifier_type"] = self._identifier_type(
            body, "RecieverIdentifierType", {"1", "2", "4", "11"}
        )
        fields.update(self._urls_and_remarks(body, remarks_required=True))
        fields["occasion"] = text(
            body.get("Occasion"), "Occasion", 100, required=False, numbers_ok=True
        )
        return self._start("reversal", fields)

    def _reversal_check(self, record: dict[str, Any]) -> tuple[int | str, str] | None:
        """The failure (code, desc) of a reversal, or None if it may go ahead."""
        if not self._initiator_ok(record):
            return INVALID_INITIATOR
        original = self.d.records().get(self.d.receipts.get(record["transaction_id"], ""))
        if original is None or original["type"] not in ("stk", "c2b", "b2c"):
            return ORIGINAL_INVALID
        if original["type"] == "b2c":
            return 2028, "The request is not permitted according to product assignment."
        parties = {
            original["shortcode"],
            original.get("party_b"),
            original["credit_account"].removeprefix("mpesa:")
            if original.get("credit_account")
            else None,
        }
        if record["receiver_party"] not in parties:
            return ORIGINAL_INVALID
        if original.get("reversed_by"):
            return "R000001", "The transaction has already been reversed."
        if record["amount"] > original["amount"]:
            return 25, "Invalid request parameters: Amount exceeds the original transaction."
        account = original.get("credit_account") or f"mpesa:{original['shortcode']}"
        if self.d.balance(account) < record["amount"]:
            return 1, "The balance is insufficient for the transaction."
        return None

    def _reversal_execute(self, record: dict[str, Any], override: str | None) -> dict[str, Any]:
        failure = self._reversal_check(record)
        if failure is not None:
            return self._envelope(record, failure[0], failure[1], self._placeholder_id())
        original = self.d.records()[self.d.receipts[record["transaction_id"]]]
        account = original.get("credit_account") or f"mpesa:{original['shortcode']}"
        receipt = self.d.ids.receipt()
        record["receipt"] = receipt
        self.d.receipts[receipt] = record["key"]
        balance = self.d.credit(
            account,
            -record["amount"],
            receipt,
            "Reversal",
            original["phone"],
            record["transaction_id"],
        )
        original.update(status="reversed", reversed_by=receipt)
        org = account.removeprefix("mpesa:")
        record.update(phone=original["phone"], shortcode=org)
        first, last = customer_name(original["phone"])
        params = [
            _param("DebitAccountBalance", _account_line("Working Account", balance)),
            _param("Amount", float(record["amount"])),
            _param("TransCompletedTime", int(ts14(self.d.clock()))),
            _param("OriginalTransactionID", record["transaction_id"]),
            _param("Charge", 0.0),
            _param("CreditPartyPublicName", f"{original['phone']} - {first} {last}"),
            _param("DebitPartyPublicName", f"{org} - {ORG_NAMES.get(org, org)}"),
        ]
        return self._envelope(record, 0, SUCCESS_DESC, receipt, params)
