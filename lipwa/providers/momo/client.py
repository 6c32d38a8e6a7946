"""MoMo Collection client for one merchant API user: request-to-pay, its status, credentials.

MoMo makes retries safe: a POST with an ``X-Reference-Id`` it has seen answers
``409 RESOURCE_ALREADY_EXIST``. So an unanswered or 5xx-answered request-to-pay is retried
with the *same* reference, with back-off inside a bounded time budget; only when that budget
is spent without a definite answer is the result AMBIGUOUS.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import httpx
import stamina

from lipwa.domain.codes import momo_result
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
from lipwa.providers.momo import account, disbursement, wire
from lipwa.providers.momo.callbacks import parse_momo_callback
from lipwa.providers.momo.credentials import COLLECTION, DISBURSEMENT, MomoCredentials
from lipwa.providers.momo.hosts import (
    MOMO_AFRICA_BASE_URL,
    PRODUCTION_BASE_URL,
    RWANDA_PRODUCTION_BASE_URL,
    SANDBOX_BASE_URL,
    is_production_host,
    is_sandbox_host,
)
from lipwa.providers.tokens import TokenCache

__all__ = [
    "MOMO_AFRICA_BASE_URL",
    "PRODUCTION_BASE_URL",
    "RWANDA_PRODUCTION_BASE_URL",
    "SANDBOX_BASE_URL",
    "USER_AGENT",
    "MomoClient",
    "is_production_host",
    "is_sandbox_host",
    "parse_momo_callback",
]

# MTN's new gateway answers HTML 403 to a python-requests User-Agent: always send our own
# (USER_AGENT, re-exported from lipwa.providers.http).
DEFAULT_TOKEN_TTL = 3600.0

# The shared plumbing under this module's old private names.
_TokenError = TokenError
_NoAnswer = NoAnswer


class _Retry(Exception):
    """An attempt without a definite answer; ``result`` is what to report if it stays so."""

    def __init__(self, result: SendResult, maybe_created: bool) -> None:
        super().__init__(result.error_code)
        self.result = result
        self.maybe_created = maybe_created


@dataclass(frozen=True)
class _Answer:
    status: int
    body: Any
    error: wire.MomoError | None
    sent_secrets: tuple[str, ...] = ()  # tokens sent, to scrub from any text


class MomoClient(ProviderHttp):
    """MoMo Collection for one merchant's API user (its own keys and cached token)."""

    def __init__(
        self,
        *,
        account_key: str,
        base_url: str,
        credentials: MomoCredentials,
        http: httpx.AsyncClient,
        tokens: TokenCache,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        retry_timeout: float = 10.0,
        retry_attempts: int = 4,
        retry_wait_initial: float = 0.5,
        retry_wait_max: float = 3.0,
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
        self._retry_timeout = retry_timeout
        self._retry_attempts = max(1, retry_attempts)
        self._retry_wait_initial = retry_wait_initial
        self._retry_wait_max = retry_wait_max
        digest = fingerprint(self.base_url, credentials.api_user, credentials.target_environment)
        # One token per product: a collection token is refused on /disbursement.
        self._token_keys = {
            product: f"momo:{account_key}:{product}:{digest}"
            for product in (COLLECTION, DISBURSEMENT)
        }

    # ----- public operations -------------------------------------------------------------------
    async def request_to_pay(
        self,
        *,
        reference_id: str,
        amount: str,
        currency: str,
        msisdn: str,
        external_id: str,
        payer_message: str,
        payee_note: str,
        callback_url: str | None,
    ) -> SendResult:
        body = wire.request_to_pay_body(
            amount=amount,
            currency=currency,
            msisdn=msisdn,
            external_id=external_id,
            payer_message=payer_message,
            payee_note=payee_note,
        )
        return await self._create(
            wire.REQUEST_TO_PAY_PATH, COLLECTION, reference_id, body, callback_url
        )

    async def _create(
        self,
        path: str,
        product: str,
        reference_id: str,
        body: dict[str, Any],
        callback_url: str | None,
    ) -> SendResult:
        """POST a creating request, retried with the *same* X-Reference-Id (MoMo answers 409
        to a reference it has): unanswered or 5xx attempts are retried within the budget."""
        headers = {"X-Reference-Id": reference_id, "Content-Type": "application/json"}
        if callback_url:  # if present it must not be empty
            headers["X-Callback-Url"] = callback_url
        maybe_created = False
        try:
            async for attempt in stamina.retry_context(
                on=_Retry,
                attempts=self._retry_attempts,
                timeout=self._retry_timeout,
                wait_initial=self._retry_wait_initial,
                wait_max=self._retry_wait_max,
                wait_jitter=self._retry_wait_initial,
            ):
                with attempt:
                    try:
                        result = await self._create_once(path, product, reference_id, body, headers)
                    except _Retry as retry:
                        maybe_created = maybe_created or retry.maybe_created
                        raise
                    if result.outcome is SendOutcome.REJECTED and maybe_created:
                        # An earlier attempt may have created it: only a GET can tell.
                        return _ambiguous(result, reference_id)
                    return result
        except _Retry as retry:
            return _ambiguous(retry.result, reference_id) if maybe_created else retry.result
        raise AssertionError("unreachable: stamina either returns or re-raises")

    async def get_request_to_pay(self, reference_id: str) -> ProviderReport | QueryFailure:
        return await self._get_status(wire.REQUEST_TO_PAY_PATH, COLLECTION, reference_id)

    # ----- disbursement: transfers (payouts) and refunds ---------------------------------------
    def supports(self, product: str) -> bool:
        """Whether the account has a subscription key for ``product`` (no network call)."""
        return bool(self._subscription_key(product))

    async def transfer(
        self,
        *,
        reference_id: str,
        amount: str,
        currency: str,
        msisdn: str,
        external_id: str,
        payer_message: str,
        payee_note: str,
        callback_url: str | None,
    ) -> SendResult:
        """Disbursement transfer to ``msisdn``; retried with the same reference, like
        request-to-pay (a 409 means the first attempt arrived)."""
        body = disbursement.transfer_body(
            amount=amount,
            currency=currency,
            msisdn=msisdn,
            external_id=external_id,
            payer_message=payer_message,
            payee_note=payee_note,
        )
        return await self._create(
            disbursement.TRANSFER_PATH, DISBURSEMENT, reference_id, body, callback_url
        )

    async def get_transfer(self, reference_id: str) -> ProviderReport | QueryFailure:
        return await self._get_status(disbursement.TRANSFER_PATH, DISBURSEMENT, reference_id)

    async def refund(
        self,
        *,
        reference_id: str,
        reference_id_to_refund: str,
        amount: str,
        currency: str,
        external_id: str,
        payer_message: str = "",
        payee_note: str = "",
        callback_url: str | None = None,
    ) -> SendResult:
        """Refund (part of) the request-to-pay whose X-Reference-Id is
        ``reference_id_to_refund``; same retry-with-same-reference rule."""
        body = disbursement.refund_body(
            amount=amount,
            currency=currency,
            external_id=external_id,
            reference_id_to_refund=reference_id_to_refund,
            payer_message=payer_message,
            payee_note=payee_note,
        )
        return await self._create(
            disbursement.REFUND_PATH, DISBURSEMENT, reference_id, body, callback_url
        )

    async def get_refund(self, reference_id: str) -> ProviderReport | QueryFailure:
        return await self._get_status(disbursement.REFUND_PATH, DISBURSEMENT, reference_id)

    async def _get_status(
        self, path: str, product: str, reference_id: str
    ) -> ProviderReport | QueryFailure:
        answer = await self._read(f"{path}/{reference_id}", product)
        if isinstance(answer, QueryFailure):
            return answer
        status, error = answer.status, answer.error
        if status == 200:
            report = wire.status_report(
                answer.body, reference_id=reference_id, require_receipt=False
            )
            if report is not None:
                message = self._scrub(report.raw_message, answer.sent_secrets)
                return dataclasses.replace(report, raw_message=message)
            return QueryFailure("invalid_response", "MoMo answered 200 without a status", 200)
        if status == 404 and error is not None and error.code == wire.NOT_FOUND:
            return ProviderReport(
                ReportState.NOT_FOUND,
                provider_ref=reference_id,
                raw_code=error.code,
                raw_message=error.message,
            )
        return self._failure(answer)

    async def check_credentials(self) -> QueryFailure | None:
        """Fetch a fresh collection token (bypassing the cache): None when it works."""
        try:
            await self._fetch_token()
        except _TokenError as exc:
            return exc.failure
        return None

    # ----- account holders and balances (momo.account) ----------------------------------------
    def lookup_product(self) -> str:
        """The product whose token reads account holders: collection, else disbursement."""
        return COLLECTION if self.supports(COLLECTION) else DISBURSEMENT

    async def account_holder_active(self, msisdn: str) -> bool | QueryFailure:
        """Whether ``msisdn`` has an active wallet (False also when MoMo knows no such
        holder)."""
        answer = await self._read(account.active_path(self.lookup_product(), msisdn))
        if isinstance(answer, QueryFailure):
            return answer
        if answer.status == 200:
            active = account.read_active(answer.body)
            if active is not None:
                return active
            return QueryFailure("invalid_response", "MoMo answered 200 without a result", 200)
        if answer.status == 404:  # older API versions: "account holder not found"
            return False
        return self._failure(answer)

    async def account_holder_name(self, msisdn: str) -> str | QueryFailure | None:
        """The holder's name from basicuserinfo (given + family name); None if not given."""
        answer = await self._read(account.basic_user_info_path(self.lookup_product(), msisdn))
        if isinstance(answer, QueryFailure):
            return answer
        if answer.status == 200:
            return account.read_holder_name(answer.body)
        return self._failure(answer)

    async def account_balance(
        self, product: str = COLLECTION
    ) -> account.MomoBalance | QueryFailure:
        """The available balance of the account's ``product`` wallet (synchronous)."""
        answer = await self._read(account.balance_path(product), product)
        if isinstance(answer, QueryFailure):
            return answer
        if answer.status == 200:
            found = account.read_balance(product, answer.body)
            if found is not None:
                return found
            return QueryFailure("invalid_response", "MoMo answered 200 without a balance", 200)
        return self._failure(answer)

    async def _read(self, path: str, product: str | None = None) -> _Answer | QueryFailure:
        try:
            answer = await self._call("GET", path, product=product or self.lookup_product())
        except _TokenError as exc:
            return exc.failure
        if isinstance(answer, _NoAnswer):
            return QueryFailure(answer.error_code, answer.message)
        return answer

    def _failure(self, answer: _Answer) -> QueryFailure:
        error = answer.error
        return QueryFailure(
            (error.code if error else None) or f"http_{answer.status}",
            (error.message if error else None) or f"MoMo answered HTTP {answer.status}",
            answer.status,
        )

    # ----- request-to-pay attempts -------------------------------------------------------------
    async def _request_to_pay_once(
        self, reference_id: str, body: dict[str, Any], headers: dict[str, str]
    ) -> SendResult:
        """One attempt: a final SendResult, or raises _Retry."""
        return await self._create_once(
            wire.REQUEST_TO_PAY_PATH, COLLECTION, reference_id, body, headers
        )

    async def _create_once(
        self,
        path: str,
        product: str,
        reference_id: str,
        body: dict[str, Any],
        headers: dict[str, str],
    ) -> SendResult:
        """One attempt of a creating POST: a final SendResult, or raises _Retry."""
        try:
            answer = await self._call("POST", path, json=body, headers=headers, product=product)
        except _TokenError as exc:
            result = token_refused(exc)
            if exc.transient:
                raise _Retry(result, maybe_created=False) from None
            return result
        if isinstance(answer, _NoAnswer):
            # Sent but unanswered may have created it; a connect error cannot have.
            raise _Retry(unanswered(answer), maybe_created=answer.sent)
        status, error = answer.status, answer.error
        code = error.code if error else None
        message = (error.message if error else None) or f"MoMo answered HTTP {status}"
        if 200 <= status < 300:
            return SendResult(SendOutcome.ACCEPTED, provider_ref=reference_id, http_status=status)
        if status == 409:
            # The reference exists at MoMo: an earlier attempt (or send) created it.
            return SendResult(
                SendOutcome.ACCEPTED,
                provider_ref=reference_id,
                error_code=code or wire.ALREADY_EXISTS,
                error_message=message,
                http_status=409,
            )
        if status == 429:
            throttled = SendResult(
                SendOutcome.REJECTED,
                error_code=code or "http_429",
                error_message=message,
                http_status=429,
                failure_code="provider_unavailable",
                transient=True,
            )
            raise _Retry(throttled, maybe_created=False)
        if code is not None and code.upper() in wire.DEFINITE_REFUSALS:
            return SendResult(
                SendOutcome.REJECTED,
                error_code=code,
                error_message=message,
                http_status=status,
                failure_code=momo_result("FAILED", code).failure_code,
            )
        if 400 <= status < 500:
            return SendResult(
                SendOutcome.REJECTED,
                error_code=code or f"http_{status}",
                error_message=message,
                http_status=status,
                failure_code="not_allowed" if status in (401, 403) else "invalid_request",
            )
        # 5xx: SERVICE_UNAVAILABLE, INTERNAL_PROCESSING_ERROR, no body, or an unknown code.
        unresolved = SendResult(
            SendOutcome.AMBIGUOUS,
            error_code=code or f"http_{status}",
            error_message=message,
            http_status=status,
        )
        raise _Retry(unresolved, maybe_created=True)

    # ----- transport ---------------------------------------------------------------------------
    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        product: str = COLLECTION,
    ) -> _Answer | _NoAnswer:
        """One product call with the cached token; on 401 refresh the token and retry once."""
        answer: _Answer | _NoAnswer | None = None
        used: list[str] = []  # every token sent: none may come back in a message
        token_key = self._token_keys[product]

        async def fetch() -> tuple[str, float]:
            return await self._fetch_token(product)

        for _ in range(2):
            token = await self._tokens.get(token_key, fetch)
            used.append(token)
            try:
                response = await self._http.request(
                    method,
                    self.base_url + path,
                    json=json,
                    headers={
                        **(headers or {}),
                        "Authorization": f"Bearer {token}",
                        "X-Target-Environment": self._credentials.target_environment,
                        "Ocp-Apim-Subscription-Key": self._subscription_key(product),
                        "Accept": "application/json",
                        "User-Agent": self._user_agent,
                    },
                    timeout=self._timeout,
                )
            except httpx.RequestError as exc:
                return no_answer(exc, "MoMo")
            body = wire.json_body(response.content)
            answer = _Answer(
                response.status_code, body, self._error(body, tuple(used)), tuple(used)
            )
            if response.status_code != 401:
                return answer
            await self._tokens.invalidate(token_key, token)
        assert answer is not None
        return answer

    async def _fetch_token(self, product: str = COLLECTION) -> tuple[str, float]:
        if not self._subscription_key(product):
            failure = QueryFailure(
                "missing_subscription_key", f"no MoMo {product} subscription key configured"
            )
            raise _TokenError(failure, transient=False)
        basic = basic_auth(self._credentials.api_user, self._credentials.api_key)
        try:
            response = await self._http.post(
                self.base_url + wire.TOKEN_PATH.format(product=product),
                headers={
                    "Authorization": f"Basic {basic}",
                    "Ocp-Apim-Subscription-Key": self._subscription_key(product),
                    # optional on the legacy gateway, mandatory on momo.africa
                    "X-Target-Environment": self._credentials.target_environment,
                    "User-Agent": self._user_agent,
                },
                timeout=self._timeout,
            )
        except httpx.RequestError as exc:
            raise token_unreachable(exc, "MoMo token", "MoMo token endpoint") from None
        body = wire.json_body(response.content)
        status = response.status_code
        token = body.get("access_token") if isinstance(body, dict) and status == 200 else None
        if isinstance(token, str) and token:
            assert isinstance(body, dict)
            return token, expires_in(body.get("expires_in"), DEFAULT_TOKEN_TTL)
        if status == 200:
            failure = QueryFailure("invalid_response", "MoMo token answer without a token", 200)
            raise _TokenError(failure, transient=True)
        error = self._error(body, ())
        failure = QueryFailure(
            (error.code if error else None) or f"http_{status}",
            (error.message if error else None)
            or f"MoMo refused the API user credentials (HTTP {status})",
            status,
        )
        # {"error": "login_failed"} comes as 401 or 500: credentials, not an outage.
        credentials_problem = status < 500 or (error is not None and error.code == "login_failed")
        raise _TokenError(failure, transient=not credentials_problem or status == 429)

    def _subscription_key(self, product: str = COLLECTION) -> str:
        return self._credentials.subscription_keys.get(product, "")

    def _error(self, body: object, tokens: tuple[str, ...]) -> wire.MomoError | None:
        error = wire.parse_error(body)
        if error is None:
            return None
        return wire.MomoError(self._scrub(error.code, tokens), self._scrub(error.message, tokens))

    def _scrub(self, text: str | None, tokens: tuple[str, ...]) -> str | None:
        if text is None:
            return None
        return wire.scrub(text, (*self._credentials.secrets(), *tokens))


def _ambiguous(result: SendResult, reference_id: str) -> SendResult:
    """The request may exist at MoMo under ``reference_id``: GET it to find out."""
    return SendResult(
        SendOutcome.AMBIGUOUS,
        provider_ref=reference_id,
        error_code=result.error_code,
        error_message=result.error_message,
        http_status=result.http_status,
    )
