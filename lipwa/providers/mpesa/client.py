"""Daraja client for one merchant account: STK push, STK query, credential check.

Results are values (``SendResult``, ``ProviderReport``, ``QueryFailure``); the only retry is
the one the invalid-token answer makes safe (it proves the request was not acted on). An STK
push whose answer is lost is never re-sent: it is reported AMBIGUOUS.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from lipwa.domain.codes import mpesa_stk_result, normalise_mpesa_code
from lipwa.providers.base import (
    ProviderReport,
    QueryFailure,
    ReportState,
    SendOutcome,
    SendResult,
)
from lipwa.providers.http import (
    USER_AGENT,
    NoAnswer,
    ProviderHttp,
    TokenError,
    basic_auth,
    expires_in,
    fingerprint,
    no_answer,
    token_refused,
    token_unreachable,
    unanswered,
)
from lipwa.providers.mpesa import balance, c2b, secured, wire
from lipwa.providers.mpesa.callbacks import parse_stk_callback, report_state
from lipwa.providers.mpesa.credentials import MpesaCredentials
from lipwa.providers.mpesa.hosts import (
    PRODUCTION_BASE_URL,
    SANDBOX_BASE_URL,
    is_production_host,
    is_sandbox_host,
)
from lipwa.providers.tokens import TokenCache

__all__ = [
    "PRODUCTION_BASE_URL",
    "SANDBOX_BASE_URL",
    "USER_AGENT",
    "MpesaClient",
    "is_production_host",
    "is_sandbox_host",
    "parse_stk_callback",
]

DEFAULT_TOKEN_TTL = 3599.0

# The shared plumbing under this module's old private names.
_TokenError = TokenError
_NoAnswer = NoAnswer


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Answer:
    status: int
    body: dict[str, Any] | None
    error: wire.DarajaError | None
    sent_secrets: tuple[str, ...] = ()  # tokens and passwords sent, to scrub from any text


class MpesaClient(ProviderHttp):
    """Daraja for one merchant account (its own credentials and cached token)."""

    def __init__(
        self,
        *,
        account_key: str,
        base_url: str,
        credentials: MpesaCredentials,
        http: httpx.AsyncClient,
        tokens: TokenCache,
        clock: Callable[[], datetime] = _utc_now,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        user_agent: str = USER_AGENT,
    ) -> None:
        super().__init__(
            account_key=account_key,
            base_url=base_url,
            http=http,
            tokens=tokens,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            user_agent=user_agent,
        )
        self._credentials = credentials
        self._clock = clock
        # The key changes with the app's consumer key (see ``fingerprint``).
        self._token_key = (
            f"mpesa:{account_key}:{fingerprint(self.base_url, credentials.consumer_key)}"
        )

    # ----- public operations -------------------------------------------------------------------
    async def stk_push(
        self,
        *,
        amount: int,
        phone: str,
        account_reference: str,
        description: str,
        callback_url: str,
    ) -> SendResult:
        def body(stamp: str) -> dict[str, Any]:
            return wire.stk_push_body(
                self._credentials,
                amount=amount,
                phone=phone,
                account_reference=account_reference,
                description=description,
                callback_url=callback_url,
                stamp=stamp,
            )

        answer = await self._send(wire.STK_PUSH_PATH, body)
        return answer if isinstance(answer, SendResult) else self._read_push_answer(answer)

    async def stk_query(self, checkout_request_id: str) -> ProviderReport | QueryFailure:
        def body(stamp: str) -> dict[str, Any]:
            return wire.stk_query_body(self._credentials, checkout_request_id, stamp=stamp)

        answer = await self._ask(wire.STK_QUERY_PATH, body)
        if isinstance(answer, QueryFailure):
            return answer
        return self._read_query_answer(checkout_request_id, answer)

    async def check_credentials(self) -> QueryFailure | None:
        """Fetch a fresh token (bypassing the cache): None when the credentials work."""
        try:
            await self._fetch_token()
        except _TokenError as exc:
            return exc.failure
        return None

    # ----- initiator-secured APIs (B2C, transaction status, reversal) -------------------------
    async def b2c_payment(
        self,
        *,
        originator_conversation_id: str,
        amount: int,
        phone: str,
        remarks: str,
        occasion: str,
        result_url: str,
        queue_timeout_url: str,
        command_id: str = "BusinessPayment",
    ) -> SendResult:
        """B2C v3 from the account's B2C shortcode. ``originator_conversation_id`` is the
        idempotency key: Daraja refuses a repeat, which is reported ACCEPTED (the first one
        exists; query it, never send again)."""
        return await self._send_secured(
            secured.B2C_PATH,
            self._credentials.b2c_shortcode,
            lambda initiator: secured.b2c_body(
                initiator,
                originator_conversation_id=originator_conversation_id,
                amount=amount,
                phone=phone,
                remarks_text=remarks,
                occasion=occasion,
                result_url=result_url,
                queue_timeout_url=queue_timeout_url,
                command_id=command_id,
            ),
        )

    async def transaction_status(
        self,
        *,
        result_url: str,
        queue_timeout_url: str,
        transaction_id: str | None = None,
        original_conversation_id: str | None = None,
        remarks: str = "Status check",
        shortcode: str | None = None,
    ) -> SendResult:
        """Ask for a transaction's status by receipt or by OriginatorConversationID. Accepted
        is all the answer says: the result arrives at ``result_url``. ``shortcode`` (PartyA)
        defaults to the B2C shortcode."""
        return await self._send_secured(
            secured.TRANSACTION_STATUS_PATH,
            shortcode or self._credentials.b2c_shortcode,
            lambda initiator: secured.transaction_status_body(
                initiator,
                transaction_id=transaction_id,
                original_conversation_id=original_conversation_id,
                result_url=result_url,
                queue_timeout_url=queue_timeout_url,
                remarks_text=remarks,
            ),
        )

    async def reversal(
        self,
        *,
        transaction_id: str,
        amount: int,
        receiver_party: str,
        result_url: str,
        queue_timeout_url: str,
        remarks: str,
    ) -> SendResult:
        """Reverse a received payment (whole transactions; the result comes to ``result_url``;
        a second reversal of the same receipt ends as ``R000001`` already reversed)."""
        return await self._send_secured(
            secured.REVERSAL_PATH,
            receiver_party,
            lambda initiator: secured.reversal_body(
                initiator,
                transaction_id=transaction_id,
                amount=amount,
                receiver_party=receiver_party,
                result_url=result_url,
                queue_timeout_url=queue_timeout_url,
                remarks_text=remarks,
            ),
        )

    def has_initiator(self, shortcode: str | None = None) -> bool:
        """Whether secured requests can be signed for ``shortcode`` (default: the B2C one);
        no network call."""
        c = self._credentials
        return bool(
            c.initiator_name
            and c.initiator_password
            and c.certificate_pem
            and (shortcode or c.b2c_shortcode)
        )

    def _initiator(self, shortcode: str | None) -> secured.Initiator:
        c = self._credentials
        if not (c.initiator_name and c.initiator_password and c.certificate_pem and shortcode):
            raise secured.MissingInitiator(
                "the M-Pesa account has no initiator name, initiator password, certificate or "
                "B2C shortcode"
            )
        credential = secured.security_credential(c.certificate_pem, c.initiator_password)
        return secured.Initiator(c.initiator_name, credential, shortcode)

    async def _send_secured(
        self,
        path: str,
        shortcode: str | None,
        build: Callable[[secured.Initiator], dict[str, Any]],
    ) -> SendResult:
        """Sign as the initiator of ``shortcode``, build the body and send it; an account
        without an initiator is refused before any call."""
        try:
            initiator = self._initiator(shortcode)
        except secured.MissingInitiator as exc:
            return _not_configured(exc)
        body = build(initiator)
        answer = await self._send(path, lambda _stamp: body)
        if isinstance(answer, SendResult):
            return answer
        if secured.is_duplicate_originator(answer.error):
            assert answer.error is not None
            return SendResult(
                SendOutcome.ACCEPTED,
                secondary_ref=str(body.get("OriginatorConversationID") or "") or None,
                error_code=answer.error.code,
                error_message=self._message(answer.error.message),
                http_status=answer.status,
            )
        return self._read_secured_answer(answer)

    def _read_secured_answer(self, answer: _Answer) -> SendResult:
        """The 4-field acceptance ``{OriginatorConversationID, ConversationID, ResponseCode,
        ResponseDescription}``, or an error read like an STK push's."""
        body, status = answer.body, answer.status
        if not (200 <= status < 300 and body is not None and answer.error is None):
            return self._read_push_answer(answer)
        refused = self._response_code_refusal(answer, body)
        if refused is not None:
            return refused
        conversation = body.get("ConversationID")
        originator = body.get("OriginatorConversationID")
        return SendResult(
            SendOutcome.ACCEPTED,
            provider_ref=conversation if isinstance(conversation, str) and conversation else None,
            secondary_ref=originator if isinstance(originator, str) and originator else None,
            http_status=status,
        )

    # ----- C2B URL registration and account balance (mpesa.c2b, mpesa.balance) ----------------
    async def register_c2b_urls(
        self,
        *,
        response_type: str,
        confirmation_url: str,
        validation_url: str,
        shortcode: str | None = None,
    ) -> c2b.Registration:
        """Register the C2B validation and confirmation URLs of ``shortcode`` (default: the
        account's). Production registers once: a repeat answers "Urls are already
        registered" (``Registration.already_registered``)."""
        body = c2b.register_body(
            shortcode=shortcode or self._credentials.shortcode,
            response_type=response_type,
            confirmation_url=confirmation_url,
            validation_url=validation_url,
        )
        answer = await self._ask(c2b.REGISTER_PATH, lambda _stamp: body)
        if isinstance(answer, QueryFailure):
            return c2b.Registration(False, code=answer.error_code, message=answer.error_message)
        registration = c2b.read_registration(answer.status, answer.body, answer.error)
        return dataclasses.replace(
            registration, message=self._message(registration.message, answer.sent_secrets)
        )

    async def account_balance(
        self,
        *,
        result_url: str,
        queue_timeout_url: str,
        shortcode: str | None = None,
        remarks: str = "Balance",
    ) -> SendResult:
        """Ask for the balances of ``shortcode`` (default: the account's). Accepted is all the
        answer says: the balances arrive at ``result_url`` (``mpesa.balance``)."""
        return await self._send_secured(
            balance.ACCOUNT_BALANCE_PATH,
            shortcode or self._credentials.shortcode,
            lambda initiator: balance.account_balance_body(
                initiator,
                result_url=result_url,
                queue_timeout_url=queue_timeout_url,
                remarks_text=remarks,
            ),
        )

    # ----- reading answers ---------------------------------------------------------------------
    def _response_code_refusal(self, answer: _Answer, body: dict[str, Any]) -> SendResult | None:
        """The ResponseCode check every synchronous acceptance shares: None when it is "0"."""
        code = body.get("ResponseCode")
        if code is None:
            return SendResult(
                SendOutcome.AMBIGUOUS,
                error_message="Daraja answered without a ResponseCode",
                http_status=answer.status,
            )
        raw_code = normalise_mpesa_code(code)
        if raw_code != "0":
            return SendResult(
                SendOutcome.REJECTED,
                error_code=raw_code,
                error_message=self._message(body.get("ResponseDescription"), answer.sent_secrets),
                http_status=answer.status,
                failure_code="rejected_by_provider",
            )
        return None

    def _read_push_answer(self, answer: _Answer) -> SendResult:
        body, status = answer.body, answer.status
        if 200 <= status < 300 and body is not None and answer.error is None:
            checkout_id = body.get("CheckoutRequestID")
            merchant_id = body.get("MerchantRequestID")
            refused = self._response_code_refusal(answer, body)
            if refused is not None:
                if refused.outcome is SendOutcome.AMBIGUOUS and isinstance(checkout_id, str):
                    # Kept so recovery can ask Daraja about it instead of parking it unknown.
                    refused = dataclasses.replace(refused, provider_ref=checkout_id or None)
                return refused
            if not isinstance(checkout_id, str) or not checkout_id:
                # Accepted, but we could never match its callback or query it.
                return SendResult(
                    SendOutcome.AMBIGUOUS,
                    error_code="0",  # the accepting ResponseCode
                    error_message="Daraja accepted the push without a CheckoutRequestID",
                    http_status=status,
                )
            return SendResult(
                SendOutcome.ACCEPTED,
                provider_ref=checkout_id,
                secondary_ref=merchant_id if isinstance(merchant_id, str) else None,
                http_status=status,
            )
        if 200 <= status < 300 and answer.error is None:
            return SendResult(
                SendOutcome.AMBIGUOUS,
                error_code="invalid_response",
                error_message=f"Daraja answered HTTP {status} with a body that is not JSON",
                http_status=status,
            )
        refusal = wire.classify_push_error(answer.error, status)
        error_code = answer.error.code if answer.error else f"http_{status}"
        message = (
            self._message(answer.error.message)
            if answer.error
            else f"Daraja answered HTTP {status} without an error body"
        )
        return SendResult(
            SendOutcome.AMBIGUOUS if refusal.ambiguous else SendOutcome.REJECTED,
            error_code=error_code,
            error_message=message,
            http_status=status,
            failure_code=None if refusal.ambiguous else refusal.failure_code,
            transient=False if refusal.ambiguous else refusal.transient,
        )

    def _read_query_answer(
        self, checkout_id: str, answer: _Answer
    ) -> ProviderReport | QueryFailure:
        error, body, status = answer.error, answer.body, answer.status
        if wire.is_still_processing(error):
            assert error is not None
            return ProviderReport(
                ReportState.PENDING,
                provider_ref=checkout_id,
                raw_code=error.code,
                raw_message=self._message(error.message),
            )
        if wire.is_unknown_checkout(error):
            assert error is not None
            return ProviderReport(
                ReportState.NOT_FOUND,
                provider_ref=checkout_id,
                raw_code=error.code,
                raw_message=self._message(error.message),
            )
        if status == 200 and body is not None and error is None and _has_code(body, "ResultCode"):
            echoed = body.get("CheckoutRequestID")
            if isinstance(echoed, str) and echoed and echoed != checkout_id:
                return QueryFailure(
                    "invalid_response", "Daraja answered about another CheckoutRequestID", status
                )
            info = mpesa_stk_result(body.get("ResultCode"))
            state = report_state(info.state)
            # The query never carries a receipt; its (authenticated) ResultCode 0 is final.
            return ProviderReport(
                state,
                provider_ref=checkout_id,
                raw_code=info.code,
                raw_message=self._message(body.get("ResultDesc"), answer.sent_secrets),
                failure_code=info.failure_code if state is ReportState.FAILED else None,
            )
        if error is not None:
            return QueryFailure(error.code, self._message(error.message) or "", status)
        return QueryFailure(
            f"http_{status}" if status != 200 else "invalid_response",
            f"Daraja answered HTTP {status} without a query result",
            status,
        )

    # ----- transport ---------------------------------------------------------------------------
    async def _send(self, path: str, body: Callable[[str], dict[str, Any]]) -> _Answer | SendResult:
        """POST a request that acts (push, secured): the answer, or the SendResult for none."""
        try:
            answer = await self._post(path, body)
        except _TokenError as exc:
            return token_refused(exc)
        return unanswered(answer) if isinstance(answer, _NoAnswer) else answer

    async def _ask(
        self, path: str, body: Callable[[str], dict[str, Any]]
    ) -> _Answer | QueryFailure:
        """POST a request that only asks (query, registration): the answer, or why none."""
        try:
            answer = await self._post(path, body)
        except _TokenError as exc:
            return exc.failure
        if isinstance(answer, _NoAnswer):
            return QueryFailure(answer.error_code, answer.message)
        return answer

    async def _post(self, path: str, body: Callable[[str], dict[str, Any]]) -> _Answer | _NoAnswer:
        """POST with the cached token; on an invalid-token answer refresh it and retry once."""
        answer: _Answer | _NoAnswer | None = None
        used: list[str] = []  # every token and password sent: none may come back in a message
        for _ in range(2):
            token = await self._tokens.get(self._token_key, self._fetch_token)
            payload = body(wire.timestamp(self._clock()))
            try:
                response = await self._http.post(
                    self.base_url + path,
                    json=payload,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                        "Accept": "application/json",
                        "User-Agent": self._user_agent,
                    },
                    timeout=self._timeout,
                )
            except httpx.RequestError as exc:
                return no_answer(exc, "Daraja")
            parsed = wire.json_object(response.content)
            used += [token, str(payload.get("Password", ""))]
            error = wire.parse_error(parsed)
            if error is not None:  # Daraja echoes the token in some errors: scrub it here
                error = wire.DarajaError(error.code, self._scrub(error.message, used))
            answer = _Answer(response.status_code, parsed, error, tuple(used))
            if not wire.is_invalid_token(answer.error, answer.status):
                return answer
            await self._tokens.invalidate(self._token_key, token)
        assert answer is not None
        return answer

    async def _fetch_token(self) -> tuple[str, float]:
        basic = basic_auth(self._credentials.consumer_key, self._credentials.consumer_secret)
        try:
            response = await self._http.get(
                self.base_url + wire.OAUTH_PATH,
                params={"grant_type": "client_credentials"},
                headers={"Authorization": f"Basic {basic}", "User-Agent": self._user_agent},
                timeout=self._timeout,
            )
        except httpx.RequestError as exc:
            raise token_unreachable(exc, "Daraja OAuth", "Daraja OAuth") from None
        body = wire.json_object(response.content)
        status = response.status_code
        token = body.get("access_token") if body and status == 200 else None
        if isinstance(token, str) and token:
            return token, expires_in(body.get("expires_in") if body else None, DEFAULT_TOKEN_TTL)
        if status == 200:
            failure = QueryFailure("invalid_response", "Daraja OAuth answered without a token", 200)
            raise _TokenError(failure, transient=True)
        error = wire.parse_error(body)
        message = self._message(error.message) if error else None
        failure = QueryFailure(
            error.code if error else f"http_{status}",
            message or f"Daraja OAuth refused the credentials (HTTP {status})",
            status,
        )
        raise _TokenError(failure, transient=status >= 500 or status == 429)

    def _message(self, value: object, sent: tuple[str, ...] = ()) -> str | None:
        if not isinstance(value, str):
            return None
        return self._scrub(value, sent)

    def _scrub(self, text: str, sent: tuple[str, ...] | list[str]) -> str:
        return wire.scrub(text, (*self._credentials.secrets(), *sent))


def _has_code(body: dict[str, Any], name: str) -> bool:
    """A code that says something: a null or blank one is no answer (never read as a failure,
    which would be final)."""
    value = body.get(name)
    return isinstance(value, int | str) and not isinstance(value, bool) and str(value).strip() != ""


def _not_configured(exc: Exception) -> SendResult:
    return SendResult(
        SendOutcome.REJECTED,
        error_code="not_configured",
        error_message=str(exc),
        failure_code="not_allowed",
    )
