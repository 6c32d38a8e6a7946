"""Safaricom M-Pesa Daraja, simulated on the real paths (only the base URL differs).

Covers OAuth, M-Pesa Express (STK push + query + callback), C2B (register, simulate,
validation, confirmation) here, and the initiator-secured APIs (B2C, Transaction Status,
Account Balance, Reversal) in ``daraja_secured``. Wire facts: ../shared/providers/daraja.md.

Simulator choices where Daraja's behaviour is unconfirmed (see also ``daraja_secured``):

- OAuth with a wrong key/secret answers HTTP 400 ``400.008.01 Invalid Authentication passed``
  (the real one may send an empty or non-JSON body).
- A body that is not JSON, or a Content-Type that is not JSON, is ``400.002.05 Invalid
  Request Payload``, except on STK push/query where a wrong Content-Type gives the documented
  ``400.002.02 Bad Request - Invalid BusinessShortCode``.
- Amounts are accepted as numbers or numeric strings if whole (``10``, ``"10"``, ``10.0``);
  ``1.5`` / ``"1.5"`` are ``Bad Request - Invalid Amount``.
- STK outcome is decided by the last four digits of ``PhoneNumber`` (who answers the prompt);
  a TransactionType/PartyB mismatch ends as ResultCode 2028 regardless of overrides.
- C2B simulate on a shortcode without registered URLs: ``500.003.1001`` "Validation and
  Confirmation URLs are not registered for this ShortCode". Unknown C2B ShortCode:
  ``400.002.02 Bad Request - Invalid ShortCode``. Validation is always called (as if External
  Validation were enabled); the MSISDN is masked on v1 and v2 alike.
- URL registrations survive ``/_sim/reset`` (they are merchant setup, like credentials).

Ledger accounts: ``mpesa:<shortcode>`` is a shortcode's collection ("Working") account —
STK and C2B credit it, reversals debit it; ``mpesa:<shortcode>:utility`` is the B2C float.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import csv
import functools
import io
import json
import logging
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from lipwa.simulator.core import Simulator
from lipwa.simulator.daraja_c2b import C2bApi
from lipwa.simulator.daraja_secured import B2C_RESULTS, SecuredApis
from lipwa.simulator.daraja_wire import (
    B2C_FLOAT,
    B2C_SHORTCODE,
    BAD_AUTH_HEADER,
    BAD_PAYLOAD,
    BEING_PROCESSED,
    BUY_GOODS_ONLINE,
    C2B_SHORTCODE,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    DUPLICATE_DETECTED,
    INITIATOR_NAME,
    INITIATOR_PASSWORD,
    INTERNAL,
    MAX_AMOUNT,
    MERCHANT_UNKNOWN,
    METHOD_NOT_ALLOWED,
    NO_CALLBACK,
    NOT_FOUND,
    ORG_NAMES,
    PAYBILL,
    PAYBILL_ONLINE,
    PAYBILL_PASSKEY,
    PENDING_FOREVER,
    QUEUE_TIMEOUT,
    SPIKE_ARREST,
    STK_PASSKEYS,
    STORE,
    SUBSCRIBER_LOCKED,
    TEST_MSISDN,
    TILL,
    TILL_OF_STORE,
    TILL_PASSKEY,
    WRONG_CREDENTIALS,
    DarajaError,
    Ids,
    customer_name,
    encrypt_credential,
    error,
    invalid,
    kenya,
    money,
    msisdn,
    shortcode,
    simulator_certificate,
    stk_password,
    text,
    timestamp,
    ts14,
    url,
    whole_amount,
)

logger = logging.getLogger(__name__)

# name -> (ResultCode, ResultDesc) for STK (§4)
STK_RESULTS: dict[str, tuple[int, str]] = {
    "success": (0, "The service request is processed successfully."),
    "insufficient_funds": (1, "The balance is insufficient for the transaction."),
    "subscriber_locked": (
        1001,
        "Unable to lock subscriber, a transaction is already in process for the current subscriber",
    ),
    "expired": (1019, "Transaction has expired."),
    "cancelled": (1032, "Request cancelled by user"),
    "unreachable": (1037, "DS timeout user cannot be reached"),
    "wrong_pin": (2001, "The initiator information is invalid."),
    "product_mismatch": (2028, "The request is not permitted according to product assignment."),
}
# The payer's last four digits pick the outcome when no override applies.
LAST_FOUR = {
    "1032": "cancelled",
    "1037": "unreachable",
    "0001": "insufficient_funds",
    "2001": "wrong_pin",
    "1001": "subscriber_locked",
}
Family = Literal["stk", "c2b", "secured"]
BodyHandler = Callable[[dict[str, Any]], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]

STATEMENT_HEADER = [
    "Receipt No.",
    "Completion Time",
    "Initiation Time",
    "Details",
    "Transaction Status",
    "Paid In",
    "Withdrawn",
    "Balance",
    "Balance Confirmed",
    "Reason Type",
    "Other Party Info",
    "Linked Transaction ID",
    "A/C No.",
]


class _AnyMethod:
    """ASGI adapter: Starlette routes a plain ASGI app for every HTTP method, so a wrong
    method reaches the endpoint, which answers Daraja's ``405.001`` itself (a function
    endpoint would get Starlette's own plain-text 405)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.endpoint(Request(scope, receive))
        await response(scope, receive, send)


def _route(path: str, endpoint: Endpoint) -> Route:
    return Route(path, _AnyMethod(endpoint))


def _reject_constant(name: str) -> Any:
    # NaN/Infinity are not JSON; accepting them would also break the /_sim/requests listing.
    raise ValueError(f"not JSON: {name}")


def _parse_json(raw: bytes) -> tuple[bool, Any]:
    if not raw:
        return False, None
    try:
        return True, json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False, raw.decode("utf-8", errors="replace")


def _account(code: str) -> str:
    return f"mpesa:{code}"


def _party_info(party: str) -> str:
    if party.isdigit() and len(party) == 12:
        first, last = customer_name(party)
        return f"{party} - {first} {last}"
    return f"{party} - {ORG_NAMES.get(party, party)}"


class Daraja:
    """The Daraja provider: routes, records in ``sim.transactions['mpesa']``, ledger moves."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        # All wire timestamps and ids come from this clock (tests may freeze it).
        self.clock: Callable[[], float] = time.time
        self.ids = Ids(sim, lambda: self.clock())
        self.certificate = simulator_certificate()
        self.c2b_urls: dict[str, dict[str, str]] = {}
        self.open_prompts: dict[str, str] = {}  # PhoneNumber -> CheckoutRequestID
        self.receipts: dict[str, str] = {}  # receipt -> key in records()
        self._calls = 0
        self.secured = SecuredApis(self)
        self.c2b = C2bApi(self)
        self._open_accounts()
        sim.provider_state.setdefault("_reset_hooks", []).append(self._reset)

    # ----- interface used by app.py / control.py ----------------------------------------
    def credentials(self) -> dict[str, Any]:
        pem = self.certificate.certificate_pem
        return {
            "note": "Lipwa simulator credentials: fake, valid only against this simulator.",
            "consumer_key": CONSUMER_KEY,
            "consumer_secret": CONSUMER_SECRET,
            "paybill": {"shortcode": PAYBILL, "passkey": PAYBILL_PASSKEY},
            "till": {"store_number": STORE, "till_number": TILL, "passkey": TILL_PASSKEY},
            "b2c": {
                "shortcode": B2C_SHORTCODE,
                "initiator_name": INITIATOR_NAME,
                "initiator_password": INITIATOR_PASSWORD,
                "certificate_pem": pem,
                # Like the portal's Test Credentials page: the password already encrypted.
                "security_credential": encrypt_credential(pem, INITIATOR_PASSWORD),
            },
            "c2b": {"shortcode": C2B_SHORTCODE},
            "test_msisdn": TEST_MSISDN,
        }

    def outcomes(self) -> set[str]:
        return (
            set(STK_RESULTS)
            | set(B2C_RESULTS)
            | {NO_CALLBACK, PENDING_FOREVER, QUEUE_TIMEOUT, DUPLICATE_DETECTED}
        )

    def routes(self) -> list[BaseRoute]:
        s = self.secured
        api = self._api
        return [
            _route("/oauth/v1/generate", self._oauth),
            _route("/mpesa/stkpush/v1/processrequest", api("stk", self._stk_push, True)),
            _route("/mpesa/stkpushquery/v1/query", api("stk", self._stk_query, True)),
            *[
                _route(f"/mpesa/c2b/{v}/registerurl", api("c2b", self.c2b.register))
                for v in ("v1", "v2")
            ],
            *[
                _route(f"/mpesa/c2b/{v}/simulate", api("c2b", self.c2b.simulate))
                for v in ("v1", "v2")
            ],
            _route("/mpesa/b2c/v1/paymentrequest", api("secured", functools.partial(s.b2c, 1))),
            _route("/mpesa/b2c/v3/paymentrequest", api("secured", functools.partial(s.b2c, 3))),
            _route("/mpesa/transactionstatus/v1/query", api("secured", s.transaction_status)),
            _route("/mpesa/accountbalance/v1/query", api("secured", s.account_balance)),
            _route("/mpesa/reversal/v1/request", api("secured", s.reversal)),
            _route("/mpesa/{rest:path}", self._not_found),
            _route("/oauth/{rest:path}", self._not_found),
        ]

    def statement_csv(self, shortcode: str | None) -> str:
        """Organisation-statement style CSV of the ledger rows of one shortcode (or all)."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(STATEMENT_HEADER)
        prefix = _account(shortcode) if shortcode else None
        for row in self.sim.ledger.rows:
            if row.provider != "mpesa":
                continue
            if prefix and row.account != prefix and not row.account.startswith(prefix + ":"):
                continue
            record = self.records().get(self.receipts.get(row.receipt, ""), {})
            initiated = float(record.get("created_at") or row.completed_at)
            reason = row.details
            other = _party_info(row.party)
            is_reversal = reason == "Reversal"
            writer.writerow(
                [
                    row.receipt,
                    f"{kenya(row.completed_at):%Y-%m-%d %H:%M:%S}",
                    f"{kenya(initiated):%Y-%m-%d %H:%M:%S}",
                    self._statement_details(reason, other, row.reference),
                    row.status,
                    money(row.paid_in) if row.paid_in else "",
                    f"-{money(row.withdrawn)}" if row.withdrawn else "",
                    money(row.balance),
                    "true",
                    reason,
                    other,
                    row.reference if is_reversal else "",
                    "" if is_reversal else row.reference,
                ]
            )
        return out.getvalue()

    @staticmethod
    def _statement_details(reason: str, other: str, reference: str) -> str:
        if reason == "Reversal":
            return f"Reversal of {reference} to {other}"
        if reason.startswith("Business Payment"):
            return f"Business Payment to {other}"
        account = f" Acc. {reference}" if reference else ""
        return f"{reason} from {other}{account}"

    # ----- shared state helpers ----------------------------------------------------------
    def records(self) -> dict[str, dict[str, Any]]:
        return self.sim.transactions.setdefault("mpesa", {})

    def is_current(self, key: str, record: dict[str, Any]) -> bool:
        """False once a reset forgot the record (its background work must then stop)."""
        return self.records().get(key) is record

    def override(self, references: list[str], phones: list[str]) -> str | None:
        for reference in references:
            found = self.sim.override_for("mpesa", reference, None) if reference else None
            if found:
                return found
        for phone in phones:
            found = self.sim.override_for("mpesa", None, phone) if phone else None
            if found:
                return found
        return None

    def credit(
        self, account: str, amount: int, receipt: str, reason: str, party: str, reference: str
    ) -> Decimal:
        return self.sim.ledger.post(
            "mpesa",
            account,
            Decimal(amount),
            receipt=receipt,
            details=reason,
            party=party,
            reference=reference,
        )

    def balance(self, account: str) -> Decimal:
        return self.sim.ledger.balances.get(account, Decimal(0))

    def later(self, work: Callable[[], Any]) -> None:
        """Run ``work`` once the provider has 'processed' the request (prompt_seconds)."""

        async def run() -> None:
            await asyncio.sleep(self.sim.settings.prompt_seconds)
            result = work()
            if asyncio.iscoroutine(result):
                await result

        self.sim.spawn(run())

    def _open_accounts(self) -> None:
        for code in (PAYBILL, TILL, C2B_SHORTCODE, B2C_SHORTCODE):
            self.sim.ledger.open(_account(code), Decimal(0))
        self.sim.ledger.open(f"{_account(B2C_SHORTCODE)}:utility", B2C_FLOAT)

    def _reset(self) -> None:
        # core.reset() swapped in a new ledger and cleared transactions; forget our indexes.
        self.open_prompts.clear()
        self.receipts.clear()
        self._open_accounts()

    # ----- request plumbing --------------------------------------------------------------
    def _api(self, family: Family, handler: BodyHandler, stk: bool = False) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                body = await self._admit(request, family, stk)
                return await handler(body)
            except DarajaError as exc:
                return exc.response()
            except Exception:
                # A simulator bug must still look like Daraja, never a traceback page.
                logger.exception("daraja simulator failed on %s", request.url.path)
                return error(INTERNAL).response()

        return endpoint

    async def _record(self, request: Request) -> Any:
        raw = await request.body()
        ok, value = _parse_json(raw)
        self.sim.record_request(
            "mpesa", request.method, request.url.path, dict(request.headers), value
        )
        return value if ok else _NOT_JSON

    async def _throttle(self) -> None:
        await self.sim.add_latency()
        self._calls += 1
        if self.sim.should_fail(f"mpesa:{self._calls}"):
            raise error(SPIKE_ARREST)

    async def _admit(self, request: Request, family: Family, stk: bool) -> dict[str, Any]:
        """Log, then the gateway's checks in order: method, throttle, token, payload."""
        body = await self._record(request)
        if request.method != "POST":
            raise error(METHOD_NOT_ALLOWED)
        await self._throttle()
        self._check_bearer(request, family)
        if "json" not in request.headers.get("content-type", "").lower():
            raise invalid("BusinessShortCode") if stk else error(BAD_PAYLOAD)
        if not isinstance(body, dict):
            raise error(BAD_PAYLOAD)
        return body

    def _check_bearer(self, request: Request, family: Family) -> None:
        header = request.headers.get("authorization")
        token = ""
        if header is not None:
            scheme, _, token = header.strip().partition(" ")
            if scheme.lower() != "bearer":
                raise error(BAD_AUTH_HEADER)
            token = token.strip()
        if token and self.sim.token_owner("mpesa", token) == CONSUMER_KEY:
            return
        if family == "secured":
            raise DarajaError("401.002.01", f"Error Occurred - Invalid Access Token - {token}")
        if family == "c2b":  # daraja.md §3: the C2B pages' own code
            raise DarajaError("400.003.01", "Invalid Access Token")
        raise DarajaError("404.001.03", "Invalid Access Token")

    async def _not_found(self, request: Request) -> Response:
        try:
            await self._record(request)
        except Exception:  # a broken upload must not turn a 404 into a traceback
            logger.debug("unreadable body on unknown path", exc_info=True)
        return error(NOT_FOUND).response()

    # ----- OAuth (§1.1) ------------------------------------------------------------------
    async def _oauth(self, request: Request) -> Response:
        try:
            await self._record(request)
            if request.method != "GET":
                raise error(METHOD_NOT_ALLOWED)
            await self._throttle()
            scheme, _, encoded = request.headers.get("authorization", "").strip().partition(" ")
            if scheme.lower() != "basic":
                raise DarajaError("400.008.01", "Invalid authentication type passed")
            if request.query_params.get("grant_type") != "client_credentials":
                raise DarajaError("400.008.02", "Invalid grant type passed")
            try:
                pair = base64.b64decode(encoded.strip(), validate=True).decode()
            except (ValueError, binascii.Error):
                pair = ""
            if pair != f"{CONSUMER_KEY}:{CONSUMER_SECRET}":
                raise DarajaError("400.008.01", "Invalid Authentication passed")
            token, ttl = self.sim.issue_token("mpesa", CONSUMER_KEY)
            # A string on the wire, one second short of the lifetime, as Daraja sends it.
            return JSONResponse({"access_token": token, "expires_in": str(max(ttl - 1, 0))})
        except DarajaError as exc:
            return exc.response()
        except Exception:
            logger.exception("daraja simulator failed on OAuth")
            return error(INTERNAL).response()

    # ----- M-Pesa Express (§2.1-2.3) -----------------------------------------------------
    async def _stk_push(self, body: dict[str, Any]) -> Response:
        code = shortcode(body.get("BusinessShortCode"))
        password = text(body.get("Password"), "Password", 512, min_len=1)
        stamp = timestamp(body.get("Timestamp"))
        kind = body.get("TransactionType")
        if kind not in (PAYBILL_ONLINE, BUY_GOODS_ONLINE):
            raise invalid("TransactionType")
        amount = whole_amount(body.get("Amount"))
        if amount > MAX_AMOUNT:
            raise invalid("Amount")
        party_a = msisdn(body.get("PartyA"), "PartyA")
        party_b = shortcode(body.get("PartyB"), "PartyB")
        phone = msisdn(body.get("PhoneNumber"), "PhoneNumber")
        callback = url(body.get("CallBackURL"), "CallBackURL")
        paybill = kind == PAYBILL_ONLINE
        reference = text(
            body.get("AccountReference"),
            "AccountReference",
            12,
            min_len=1 if paybill else 0,
            required=paybill,
            numbers_ok=True,
        )
        desc = text(
            body.get("TransactionDesc"), "TransactionDesc", 13, required=False, numbers_ok=True
        )
        self._check_stk_password(code, password, stamp)
        if phone in self.open_prompts:
            raise error(SUBSCRIBER_LOCKED)
        # Product mismatches are accepted here and fail only in the callback (2028, §2.1).
        config_ok = party_b == code if paybill else TILL_OF_STORE.get(code) == party_b
        credit_to = party_b if config_ok else code
        now = self.clock()
        merchant_id = self.ids.merchant_request()
        checkout_id = self.ids.checkout_request(phone)
        record: dict[str, Any] = {
            "type": "stk",
            "status": "pending",
            "result_code": None,
            "result_desc": None,
            "receipt": None,
            "amount": amount,
            "phone": phone,
            "party_a": party_a,
            "party_b": party_b,
            "shortcode": code,
            "transaction_type": kind,
            "account_reference": reference,
            "transaction_desc": desc,
            "merchant_request_id": merchant_id,
            "checkout_request_id": checkout_id,
            "callback_url": callback,
            "credit_account": _account(credit_to),
            "config_ok": config_ok,
            "outcome": None,
            "callback_sent": False,
            "created_at": now,
            "completed_at": None,
        }
        self.records()[checkout_id] = record
        self.open_prompts[phone] = checkout_id
        self.later(lambda: self._stk_resolve(record))
        accepted = "Success. Request accepted for processing"
        return JSONResponse(
            {
                "MerchantRequestID": merchant_id,
                "CheckoutRequestID": checkout_id,
                "ResponseCode": "0",
                "ResponseDescription": accepted,
                "CustomerMessage": accepted,
            }
        )

    def _check_stk_password(self, code: str, password: str, stamp: str) -> None:
        passkey = STK_PASSKEYS.get(code)
        if passkey is None:
            raise error(MERCHANT_UNKNOWN)
        if password != stk_password(code, passkey, stamp):
            raise error(WRONG_CREDENTIALS)

    def _stk_outcome(self, record: dict[str, Any], override: str | None) -> str:
        if not record["config_ok"]:
            return "product_mismatch"
        if override in STK_RESULTS:
            return str(override)
        return LAST_FOUR.get(record["phone"][-4:], "success")

    def _stk_resolve(self, record: dict[str, Any]) -> None:
        checkout_id = record["checkout_request_id"]
        if self.open_prompts.get(record["phone"]) == checkout_id:
            del self.open_prompts[record["phone"]]
        if not self.is_current(checkout_id, record):
            return
        override = self.override(
            [checkout_id, record["merchant_request_id"], record["account_reference"]],
            [record["phone"], record["party_a"]],
        )
        if override == PENDING_FOREVER and record["config_ok"]:
            record["outcome"] = PENDING_FOREVER
            return
        outcome = self._stk_outcome(record, override)
        code, desc = STK_RESULTS[outcome]
        now = self.clock()
        record.update(
            status="completed" if code == 0 else "failed",
            result_code=code,
            result_desc=desc,
            outcome=outcome,
            completed_at=now,
        )
        callback: dict[str, Any] = {
            "MerchantRequestID": record["merchant_request_id"],
            "CheckoutRequestID": checkout_id,
            "ResultCode": code,
            "ResultDesc": desc,
        }
        if code == 0:
            callback["CallbackMetadata"] = self._stk_settle(record, now)
        if override == NO_CALLBACK:
            return
        self.sim.send_callback(
            "mpesa", "stk", checkout_id, record["callback_url"], {"Body": {"stkCallback": callback}}
        )
        record["callback_sent"] = True

    def _stk_settle(self, record: dict[str, Any], now: float) -> dict[str, Any]:
        """Credit the merchant and build the success metadata (§2.2 types)."""
        receipt = self.ids.receipt()
        record["receipt"] = receipt
        self.receipts[receipt] = record["checkout_request_id"]
        paybill = record["transaction_type"] == PAYBILL_ONLINE
        self.credit(
            record["credit_account"],
            record["amount"],
            receipt,
            "Pay Bill Online" if paybill else "Buy Goods Online",
            record["phone"],
            record["account_reference"],
        )
        return {
            "Item": [
                {"Name": "Amount", "Value": float(record["amount"])},
                {"Name": "MpesaReceiptNumber", "Value": receipt},
                {"Name": "Balance"},
                {"Name": "TransactionDate", "Value": int(ts14(now))},
                {"Name": "PhoneNumber", "Value": int(record["phone"])},
            ]
        }

    async def _stk_query(self, body: dict[str, Any]) -> Response:
        code = shortcode(body.get("BusinessShortCode"))
        password = text(body.get("Password"), "Password", 512, min_len=1)
        stamp = timestamp(body.get("Timestamp"))
        checkout_id = text(body.get("CheckoutRequestID"), "CheckoutRequestID", 64, min_len=1)
        self._check_stk_password(code, password, stamp)
        record = self.records().get(checkout_id)
        if record is None or record["type"] != "stk" or record["shortcode"] != code:
            raise invalid("CheckoutRequestID")
        if record["status"] == "pending":
            # The recorded sandbox answer echoes the CheckoutRequestID as requestId.
            raise error(BEING_PROCESSED, checkout_id)
        return JSONResponse(
            {
                "ResponseCode": "0",
                "ResponseDescription": "The service request has been accepted successfully",
                "MerchantRequestID": record["merchant_request_id"],
                "CheckoutRequestID": checkout_id,
                "ResultCode": str(record["result_code"]),
                "ResultDesc": record["result_desc"],
            }
        )


class _NotJson:
    """Marker for a body that was present but not JSON (distinct from JSON ``null``)."""


_NOT_JSON = _NotJson()
