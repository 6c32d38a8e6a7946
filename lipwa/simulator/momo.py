"""MTN MoMo Open API simulator: sandbox provisioning, tokens, Collection and Disbursement.

Paths, headers, bodies and error shapes follow the wire (facts sheet ``providers/momo.md``), so
a client changes only its base URL. Error shapes, by layer:

* APIM gateway (subscription key, bearer, unknown path): ``{"statusCode", "message"}``
* token endpoint, bad API user/key: ``401 {"error": "login_failed"}``
* product errors: ``{"code", "message"}``; 400s have an empty body (cause in the
  ``X-Lipwa-Sim-Reason`` header, simulator-only); a wrong method is
  ``405 {"code": "NOT_ALLOWED", ...}`` like the rest of the simulator.

Creating POSTs answer 202 and the resource starts PENDING; after ``prompt_seconds`` it settles
per the sandbox use-case table (``momo_wire``), in *every* target environment so RWF/UGX flows
can use the magic numbers too. ``/_sim/scenario`` overrides win over the table.

Choices where the wire is unconfirmed (facts sheet): 400 bodies are empty; ``amount`` must be
a numeric string (a JSON number is a 400); a new API key replaces the old one; users created
through ``/v1_0/apiuser`` are sandbox-only (the demo user may use every market); a resource is
visible only to the API user that created it; "Delayed" settles after 5 x ``prompt_seconds``,
"Ongoing" never; refund magic values 1..13 are read from ``externalId``; a refund fails
asynchronously (RESOURCE_NOT_FOUND / NOT_ALLOWED / INVALID_CURRENCY / NOT_ENOUGH_FUNDS) unless
it refunds a SUCCESSFUL request-to-pay, in its currency, within what earlier refunds left;
delivery notification answers 200 with an empty body; an injected fault answers 503
SERVICE_UNAVAILABLE or 500 INTERNAL_PROCESSING_ERROR *before* anything is created.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from lipwa.simulator.core import Simulator
from lipwa.simulator.momo_statement import statement_csv
from lipwa.simulator.momo_wire import (
    ACCOUNT_HOLDER_TABLE,
    APIM_BAD_TOKEN,
    APIM_INVALID_KEY,
    BASIC_USER_INFO,
    ENVIRONMENTS,
    MESSAGES,
    OUTCOMES,
    PRODUCTS,
    REFUND_TABLE,
    REQUEST_TO_PAY_TABLE,
    TRANSFER_TABLE,
    Order,
    Reject,
    apim_error,
    bad,
    callback_host,
    is_uuid4,
    parse_order,
    party_id_ok,
    product_error,
    reference,
)

PROVIDER = "momo"
# Opening float of the disbursement accounts (a currency first seen later opens with the
# default float); collection accounts open empty and fill with paid requests-to-pay.
DISBURSEMENT_FLOAT = {"EUR": Decimal(1_000_000), "RWF": Decimal(500_000_000),
                      "UGX": Decimal(1_000_000_000)}
DEFAULT_FLOAT = Decimal(1_000_000)


@dataclass
class ApiUser:
    api_key: str
    callback_host: str | None  # None: the demo user, whose host follows the live setting
    any_environment: bool  # the demo user may call every market; provisioned ones sandbox only


@dataclass(frozen=True)
class Caller:
    product: str
    api_user: str
    environment: str
    currency: str


@dataclass(frozen=True)
class Operation:
    name: str  # requesttopay | requesttowithdraw | transfer | deposit | refund
    product: str
    party_field: str | None  # payer | payee; None for refund (payee = original payer)
    table: dict[str, str]
    statement_type: str


OPERATIONS = {
    "requesttopay": Operation("requesttopay", "collection", "payer", REQUEST_TO_PAY_TABLE,
                              "PAYMENT"),
    # A cash-out the payer approves (momo.md 4.5): a request-to-pay in all but its name.
    "requesttowithdraw": Operation(
        "requesttowithdraw", "collection", "payer", REQUEST_TO_PAY_TABLE, "WITHDRAWAL"
    ),
    "transfer": Operation("transfer", "disbursement", "payee", TRANSFER_TABLE, "TRANSFER"),
    "deposit": Operation("deposit", "disbursement", "payee", REQUEST_TO_PAY_TABLE, "DEPOSIT"),
    "refund": Operation("refund", "disbursement", None, REFUND_TABLE, "REFUND"),
}


class MoMo:
    """The MoMo half of the simulator; state lives in ``sim`` except for the API users."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        rng = sim.rng_for("momo-credentials", "demo")
        self.keys = {p: f"{rng.getrandbits(128):032x}" for p in PRODUCTS}
        self.demo_user = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.users: dict[str, ApiUser] = {
            self.demo_user: ApiUser(f"{rng.getrandbits(128):032x}", None, any_environment=True)
        }
        self._jwts: dict[str, str] = {}  # signature part (a core token) -> the whole JWT
        self._attempts: Counter[str] = Counter()
        self._ftids: set[str] = set()
        self._generation = 0  # bumped on reset so settle tasks of a past life do nothing
        self._open_accounts()
        sim.provider_state.setdefault("_reset_hooks", []).append(self._on_reset)

    # ----- interface used by app.py / control.py -------------------------------------------
    def credentials(self) -> dict[str, Any]:
        return {
            "note": "simulator-only credentials; worthless against MTN",
            "api_user": self.demo_user,
            "api_key": self.users[self.demo_user].api_key,
            "subscription_keys": dict(self.keys),
            "target_environment": "sandbox",
            "currency": "EUR",
            "callback_host": self.sim.settings.momo_callback_host,
            "markets": [
                {"target_environment": env, "currency": cur}
                for env, cur in ENVIRONMENTS.items()
                if env != "sandbox"
            ],
        }

    def outcomes(self) -> set[str]:
        return set(OUTCOMES)

    def statement_csv(self, product: str | None) -> str:
        return statement_csv(self.sim.ledger.rows, self.records, product)

    def routes(self) -> list[BaseRoute]:
        col, dis = "/collection/v1_0", "/disbursement"
        routes: list[BaseRoute] = [
            self._route("/v1_0/apiuser", POST=self._create_user),
            self._route("/v1_0/apiuser/{user}", GET=self._get_user),
            self._route("/v1_0/apiuser/{user}/apikey", POST=self._create_key),
        ]
        for product in PRODUCTS:
            routes += [self._route(f"/{product}/token{slash}", POST=self._token)
                       for slash in ("/", "")]
        routes += [
            self._route(f"{col}/requesttopay", POST=self._create("requesttopay")),
            self._route(f"{col}/requesttopay/{{ref}}", GET=self._status("requesttopay")),
            self._route(f"{col}/requesttopay/{{ref}}/deliverynotification", POST=self._notify),
            self._route(f"{col}/requesttowithdraw/{{ref}}", GET=self._status("requesttowithdraw")),
            self._route(f"{dis}/v1_0/requesttopay/{{ref}}/deliverynotification",
                        POST=self._notify),
            self._route(f"{dis}/v1_0/transfer", POST=self._create("transfer")),
            self._route(f"{dis}/v1_0/transfer/{{ref}}", GET=self._status("transfer")),
            self._route(f"{dis}/v1_0/deposit/{{ref}}", GET=self._status("deposit")),
            self._route(f"{dis}/v1_0/refund/{{ref}}", GET=self._status("refund")),
        ]
        for version in ("v1_0", "v2_0"):
            routes += [
                self._route(
                    f"/collection/{version}/requesttowithdraw",
                    POST=self._create("requesttowithdraw"),
                ),
                self._route(f"{dis}/{version}/deposit", POST=self._create("deposit")),
                self._route(f"{dis}/{version}/refund", POST=self._create("refund")),
            ]
        for product in ("collection", "disbursement"):
            base = f"/{product}/v1_0"
            routes += [
                self._route(f"{base}/account/balance", GET=self._balance),
                self._route(f"{base}/account/balance/{{currency}}", GET=self._balance),
                self._route(f"{base}/accountholder/{{kind}}/{{holder}}/active", GET=self._active),
                self._route(f"{base}/accountholder/{{kind}}/{{holder}}/basicuserinfo",
                            GET=self._user_info),
            ]
        # Anything else under MoMo's prefixes: Azure APIM's "no such operation" answer.
        routes += [self._route(f"/{prefix}/{{rest:path}}") for prefix in (*PRODUCTS, "v1_0")]
        return routes

    # ----- plumbing -------------------------------------------------------------------------
    @property
    def records(self) -> dict[str, dict[str, Any]]:
        return self.sim.transactions.setdefault(PROVIDER, {})

    def _on_reset(self) -> None:
        self._generation += 1
        self._attempts.clear()
        self._ftids.clear()
        self._jwts.clear()
        self._open_accounts()

    def _open_accounts(self) -> None:
        for currency, amount in DISBURSEMENT_FLOAT.items():
            self.sim.ledger.open(f"momo:disbursement:{currency}", amount)
            self.sim.ledger.open(f"momo:collection:{currency}", Decimal(0))

    def _account(self, product: str, currency: str) -> str:
        name = f"momo:{product}:{currency}"
        opening = DISBURSEMENT_FLOAT.get(currency, DEFAULT_FLOAT)
        self.sim.ledger.open(name, opening if product == "disbursement" else Decimal(0))
        return name

    def _route(self, path: str, **handlers: Any) -> Route:
        """One route for every method, so a wrong method still gets a MoMo-shaped answer."""

        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            self.sim.record_request(PROVIDER, request.method, request.url.path,
                                    dict(request.headers), _loggable(raw))
            await self.sim.add_latency()
            if not handlers:
                return apim_error(404, "Resource not found")
            handler = handlers.get(request.method)
            if handler is None:
                return product_error(405, "NOT_ALLOWED", "Method not allowed.")
            try:
                response: Response = await handler(request)
            except Reject as reject:
                return reject.response
            return response

        return Route(path, _AnyMethod(endpoint))

    def _maybe_fail(self, request: Request) -> None:
        """Injected transient error, before anything is created, so a retry can succeed."""
        call = f"{request.method} {request.url.path} {request.headers.get('x-reference-id')}"
        self._attempts[call] += 1
        key = f"momo:{call}#{self._attempts[call]}"  # each retry draws anew, reproducibly
        if self.sim.should_fail(key):
            if self.sim.chance("momo-error-kind", key) < 0.5:
                raise Reject(product_error(503, "SERVICE_UNAVAILABLE"))
            raise Reject(product_error(500, "INTERNAL_PROCESSING_ERROR"))

    def _require_key(self, request: Request, products: tuple[str, ...]) -> None:
        key = request.headers.get("ocp-apim-subscription-key") or request.query_params.get(
            "subscription-key"
        )
        if key is None or key not in {self.keys[p] for p in products}:
            raise Reject(apim_error(401, APIM_INVALID_KEY))

    def _authorize(self, request: Request, product: str) -> Caller:
        """Subscription key, injected faults, bearer and target environment of a product call."""
        self._require_key(request, (product,))
        self._maybe_fail(request)
        api_user = self._bearer_user(request, product)
        env = request.headers.get("x-target-environment")
        if not env:
            raise bad("X-Target-Environment is required")
        user = self.users.get(api_user)
        if env not in ENVIRONMENTS or user is None or (
            env != "sandbox" and not user.any_environment
        ):
            raise Reject(product_error(500, "NOT_ALLOWED_TARGET_ENVIRONMENT"))
        return Caller(product, api_user, env, ENVIRONMENTS[env])

    def _bearer_user(self, request: Request, product: str) -> str:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        signature = token.rsplit(".", 1)[-1]
        owner = self.sim.token_owner(PROVIDER, signature)
        if scheme.lower() != "bearer" or owner is None or self._jwts.get(signature) != token:
            raise Reject(apim_error(401, APIM_BAD_TOKEN))
        token_product, _, api_user = owner.partition(":")
        if token_product != product:  # a collection token is no good on /disbursement
            raise Reject(apim_error(401, APIM_BAD_TOKEN))
        return api_user

    # ----- sandbox provisioning [2] ---------------------------------------------------------
    async def _create_user(self, request: Request) -> Response:
        self._require_key(request, PRODUCTS)
        self._maybe_fail(request)
        user_id = reference(request.headers.get("x-reference-id"))
        body = _json(await request.body())
        host = body.get("providerCallbackHost") if isinstance(body, dict) else None
        if not isinstance(host, str) or not host.strip() or len(host) > 255:
            raise bad("providerCallbackHost must be a host name")
        if user_id in self.users:
            return product_error(409, "RESOURCE_ALREADY_EXIST")
        # No key until POST .../apikey, as on MTN.
        self.users[user_id] = ApiUser("", host.strip().lower(), any_environment=False)
        return Response(status_code=201)

    def _user_for(self, request: Request) -> tuple[str, ApiUser]:
        self._require_key(request, PRODUCTS)
        self._maybe_fail(request)
        user_id = reference(request.path_params["user"], "API user id")
        user = self.users.get(user_id)
        if user is None:
            raise Reject(product_error(404, "RESOURCE_NOT_FOUND"))
        return user_id, user

    async def _get_user(self, request: Request) -> Response:
        user_id, _ = self._user_for(request)
        return JSONResponse(
            {"providerCallbackHost": self._host_of(user_id), "targetEnvironment": "sandbox"}
        )

    async def _create_key(self, request: Request) -> Response:
        # A key cannot be fetched again; asking anew replaces it (the old one stops working).
        _, user = self._user_for(request)
        user.api_key = _hex32()
        return JSONResponse({"apiKey": user.api_key}, status_code=201)

    def _reason_object(self) -> bool:
        return self.sim.settings.momo_reason_form == "object"

    def _host_of(self, api_user: str) -> str:
        host = self.users[api_user].callback_host
        return host if host is not None else self.sim.settings.momo_callback_host.lower()

    # ----- token [3] ------------------------------------------------------------------------
    async def _token(self, request: Request) -> Response:
        product = request.url.path.split("/")[1]
        self._require_key(request, (product,))
        self._maybe_fail(request)
        # Any body is tolerated: libraries send {} or grant_type and MTN accepts it [3].
        api_user = _basic_user(request.headers.get("authorization", ""), self.users)
        if api_user is None:
            return JSONResponse({"error": "login_failed"}, status_code=401)
        signature, ttl = self.sim.issue_token(PROVIDER, f"{product}:{api_user}")
        jwt = _jwt_looking(api_user, ttl, signature)
        self._jwts[signature] = jwt
        return JSONResponse({"access_token": jwt, "token_type": "access_token", "expires_in": ttl})

    # ----- creating and reading transactions [4.1, 4.2, 5] ----------------------------------
    def _create(self, name: str) -> Any:
        operation = OPERATIONS[name]

        async def handler(request: Request) -> Response:
            caller = self._authorize(request, operation.product)
            ref = reference(request.headers.get("x-reference-id"))
            callback_url = request.headers.get("x-callback-url")
            host = None if callback_url is None else callback_host(callback_url)
            order = parse_order(_json(await request.body()), operation.party_field)
            if order.currency != caller.currency:
                return product_error(500, "INVALID_CURRENCY")
            if host is not None and host != self._host_of(caller.api_user):
                return product_error(500, "INVALID_CALLBACK_URL_HOST")
            if ref in self.records:
                return product_error(409, "RESOURCE_ALREADY_EXIST")
            self._open(operation, caller, ref, order, callback_url)
            if self.sim.fails_after_create(f"{name}:{ref}"):
                return product_error(500, "INTERNAL_PROCESSING_ERROR")
            return Response(status_code=202)

        return handler

    def _status(self, name: str) -> Any:
        async def handler(request: Request) -> Response:
            caller = self._authorize(request, OPERATIONS[name].product)
            ref = reference(request.path_params["ref"], "reference id")
            record = self.records.get(ref)
            if record is None or record["operation"] != name or record["api_user"] != (
                caller.api_user
            ):
                return product_error(404, "RESOURCE_NOT_FOUND")
            return JSONResponse(result_body(record, self._reason_object()))

        return handler

    def _open(
        self, operation: Operation, caller: Caller, ref: str, order: Order, url: str | None
    ) -> None:
        party = order.party
        if order.refund_of is not None:  # a refund pays the original payer back
            original = self.records.get(order.refund_of)
            party = original["party"] if original else None
        outcome = self._pick_outcome(operation, ref, order, party)
        self.records[ref] = {
            "reference_id": ref,
            "operation": operation.name,
            "product": operation.product,
            "api_user": caller.api_user,
            "status": "PENDING",
            "reason": None,
            "financial_transaction_id": None,
            "amount": order.amount,
            "currency": order.currency,
            "party": party,
            "party_role": "payer" if operation.party_field == "payer" else "payee",
            "external_id": order.external_id,
            "payer_message": order.payer_message,
            "payee_note": order.payee_note,
            "target_environment": caller.environment,
            "created_at": time.time(),
            "completed_at": None,
            "callback_url": url,
            "outcome": outcome,
            "refund_of": order.refund_of,
            "refunded": "0",
            "notifications": [],
        }
        delay = OUTCOMES[outcome].delay
        if delay is not None:
            self.sim.spawn(self._settle_later(ref, delay * self.sim.settings.prompt_seconds))

    def _pick_outcome(
        self, operation: Operation, ref: str, order: Order, party: dict[str, str] | None
    ) -> str:
        party_id = party["partyId"] if party else None
        override = self.sim.override_for(PROVIDER, ref, party_id)
        if override in OUTCOMES:
            return override
        magic_key = order.external_id if operation.name == "refund" else party_id
        return operation.table.get(magic_key or "", "success")

    async def _settle_later(self, ref: str, delay: float) -> None:
        generation = self._generation
        await asyncio.sleep(delay)
        if generation == self._generation:
            self._settle(ref)

    def _settle(self, ref: str) -> None:
        record = self.records.get(ref)
        if record is None or record["status"] != "PENDING":
            return
        outcome = OUTCOMES[record["outcome"]]
        reason = outcome.reason if outcome.status == "FAILED" else self._book(record)
        record["status"] = "FAILED" if reason else "SUCCESSFUL"
        record["reason"] = reason
        record["completed_at"] = time.time()
        if record["callback_url"] and outcome.callback:
            method = "POST" if record["operation"] == "deposit" else (
                self.sim.settings.momo_callback_method
            )
            self.sim.send_callback(PROVIDER, record["operation"], key=ref,
                                   url=record["callback_url"],
                                   body=result_body(record, self._reason_object()),
                                   method=method)

    def _book(self, record: dict[str, Any]) -> str | None:
        """Move the money of a successful outcome; returns a failure reason if it cannot."""
        amount = Decimal(record["amount"])
        operation = OPERATIONS[record["operation"]]
        if operation.name == "refund":
            reason = self._refund_problem(record, amount)
            if reason:
                return reason
        account = self._account(operation.product, record["currency"])
        sign = 1 if operation.product == "collection" else -1
        if sign < 0 and self.sim.ledger.balances[account] < amount:
            return "NOT_ENOUGH_FUNDS"
        record["financial_transaction_id"] = self._new_transaction_id(record["reference_id"])
        party = record["party"]["partyId"] if record["party"] else ""
        self.sim.ledger.post(PROVIDER, account, sign * amount,
                             receipt=record["financial_transaction_id"],
                             details=operation.statement_type, party=party,
                             reference=record["external_id"] or "")
        if operation.name == "refund":
            original = self.records[record["refund_of"]]
            original["refunded"] = str(Decimal(original["refunded"]) + amount)
        return None

    def _refund_problem(self, record: dict[str, Any], amount: Decimal) -> str | None:
        """Simulator rules (MoMo's are undocumented): refund only a paid request-to-pay, in its
        currency, up to what is left of it after earlier refunds."""
        original = self.records.get(record["refund_of"])
        if (original is None or original["operation"] != "requesttopay"
                or original["api_user"] != record["api_user"]):
            return "RESOURCE_NOT_FOUND"
        if original["status"] != "SUCCESSFUL":
            return "NOT_ALLOWED"
        if original["currency"] != record["currency"]:
            return "INVALID_CURRENCY"
        if amount > Decimal(original["amount"]) - Decimal(original["refunded"]):
            return "NOT_ALLOWED"
        return None

    def _new_transaction_id(self, ref: str) -> str:
        """A unique 10-digit string, derived from seed and reference (so runs repeat)."""
        attempt = 0
        while True:
            candidate = str(1_000_000_000 + int(self.sim.chance(f"ftid{attempt}", ref) * 9e9))
            if candidate not in self._ftids:
                self._ftids.add(candidate)
                return candidate
            attempt += 1

    # ----- delivery notification, balances, account holders [4.4, 4.5, 5.5] ----------------
    async def _notify(self, request: Request) -> Response:
        product = request.url.path.split("/")[1]
        caller = self._authorize(request, product)
        ref = reference(request.path_params["ref"], "reference id")
        text = request.headers.get("notificationmessage")
        body = _json(await request.body(), empty_ok=True)
        if isinstance(body, dict) and body.get("notificationMessage") is not None:
            text = body["notificationMessage"]
        elif body is not None and not isinstance(body, dict):
            raise bad("body must be a JSON object")
        if not isinstance(text, str) or not text or len(text) > 160:
            raise bad("notificationMessage (header or body) of 1..160 characters is required")
        record = self.records.get(ref)
        if record is None or record["product"] != product or record["api_user"] != (
            caller.api_user
        ):
            return product_error(404, "RESOURCE_NOT_FOUND")
        record["notifications"].append(
            {"message": text, "language": request.headers.get("language"), "at": time.time()}
        )
        return Response(status_code=200)  # 200, empty body (PHP SDK sample) [4.4]

    async def _balance(self, request: Request) -> Response:
        caller = self._authorize(request, request.url.path.split("/")[1])
        currency = request.path_params.get("currency", caller.currency)
        if currency != caller.currency:  # an account holds its market's currency only
            return product_error(500, "INVALID_CURRENCY")
        balance = self.sim.ledger.balances[self._account(caller.product, currency)]
        return JSONResponse({"availableBalance": str(balance), "currency": currency})

    def _holder(self, request: Request) -> tuple[str, str]:
        self._authorize(request, request.url.path.split("/")[1])
        kind, holder = request.path_params["kind"], request.path_params["holder"]
        if kind not in ("msisdn", "email", "party_code") or not party_id_ok(kind.upper(), holder):
            raise bad("accountHolderIdType must be msisdn|email|party_code with a matching id")
        return kind, holder

    async def _active(self, request: Request) -> Response:
        case = ACCOUNT_HOLDER_TABLE.get(self._holder(request), True)
        if isinstance(case, tuple):
            return product_error(*case)
        return JSONResponse({"result": case})

    async def _user_info(self, request: Request) -> Response:
        self._holder(request)
        return JSONResponse(BASIC_USER_INFO)


# ----- helpers ------------------------------------------------------------------------------
class _AnyMethod:
    """ASGI wrapper: Starlette routes a class endpoint for every method (a function only GET)."""

    def __init__(self, endpoint: Callable[[Request], Awaitable[Response]]) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.endpoint(Request(scope, receive))
        await response(scope, receive, send)


def result_body(record: dict[str, Any], reason_object: bool = False) -> dict[str, Any]:
    """The status object of GET .../{ref}, also the callback body [4.2, 4.3]. ``reason_object``:
    the spec's ``{"code", "message"}`` reason, as some production markets send it."""
    body: dict[str, Any] = {}
    if record["financial_transaction_id"]:
        body["financialTransactionId"] = record["financial_transaction_id"]
    if record["external_id"] is not None:
        body["externalId"] = record["external_id"]
    body["amount"] = record["amount"]
    body["currency"] = record["currency"]
    if record["party"]:
        body[record["party_role"]] = dict(record["party"])
    if record["payer_message"] is not None:
        body["payerMessage"] = record["payer_message"]
    if record["payee_note"] is not None:
        body["payeeNote"] = record["payee_note"]
    body["status"] = record["status"]
    if record["status"] == "FAILED":
        code = record["reason"]
        # A bare string, as the sandbox sends it; the spec's object in some markets [4.2].
        message = MESSAGES.get(code, code)
        body["reason"] = {"code": code, "message": message} if reason_object else code
    return body


def _json(raw: bytes, empty_ok: bool = False) -> Any:
    if not raw.strip():
        if empty_ok:
            return None
        raise bad("a JSON body is required")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise bad("body is not valid JSON") from exc


def _loggable(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw[:4000].decode("utf-8", errors="replace")


def _basic_user(header: str, users: dict[str, ApiUser]) -> str | None:
    """The API user of a valid ``Basic base64(apiUser:apiKey)`` header, else None."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    api_user, _, api_key = decoded.partition(":")
    user = users.get(api_user.lower()) if is_uuid4(api_user) else None
    if user is None or not user.api_key or api_key != user.api_key:
        return None
    return api_user.lower()


def _jwt_looking(api_user: str, ttl: int, signature: str) -> str:
    """A token shaped like MTN's JWT; its last part is the core token that is looked up."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    expires = time.strftime("%Y-%m-%dT%H:%M:%S.000", time.gmtime(time.time() + ttl))
    claims = {"clientId": api_user, "expires": expires, "sessionId": str(uuid.uuid4())}
    return f"{part({'typ': 'JWT', 'alg': 'R256'})}.{part(claims)}.{signature}"


def _hex32() -> str:
    return uuid.uuid4().hex
