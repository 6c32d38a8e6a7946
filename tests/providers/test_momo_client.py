"""MomoClient against a scripted MoMo Open API (httpx.MockTransport): every branch."""

from __future__ import annotations

import base64
import json
import uuid
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from lipwa.providers.base import ProviderReport, QueryFailure, ReportState, SendOutcome, SendResult
from lipwa.providers.momo import MomoClient, MomoCredentials
from lipwa.providers.tokens import TokenCache

# ----- a scripted fake provider for httpx.MockTransport ------------------------------------
Step = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def reply(status: int, body: Any = None, *, text: str | None = None) -> httpx.Response:
    if text is not None:
        return httpx.Response(status, text=text)
    if body is None:
        return httpx.Response(status)
    return httpx.Response(status, json=body)


class Script:
    """Per-path queues of answers; the last answer of a queue repeats."""

    def __init__(self) -> None:
        self.steps: dict[str, list[Step]] = defaultdict(list)
        self.requests: list[httpx.Request] = []

    def on(self, path: str, *steps: Step) -> Script:
        self.steps[path].extend(steps)
        return self

    def calls(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.steps.get(request.url.path)
        if not queue:
            return httpx.Response(404, json={"code": "RESOURCE_NOT_FOUND", "message": "nope"})
        step = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            # a fresh copy each time: a Response can only be read once
            return httpx.Response(step.status_code, headers=step.headers, content=step.content)
        return step(request)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content) if request.content else None


CREDS = MomoCredentials(
    api_user="9f1a7c9e-5b1c-4b8e-9d3a-2f6a1c0e7b55",
    api_key="ApiKey0123456789abcdef0123456789",
    subscription_keys={"collection": "SubKeyCollection0123456789", "disbursement": "SubKeyDisb"},
    target_environment="mtnrwanda",
    currency="RWF",
)
TOKEN_1 = "eyJhbGciOiJSMjU2In0.eyJjbGllbnRJZCI6IjEifQ.SignatureOneAAAAAAAAAAAAAAAAAA"
TOKEN_2 = "eyJhbGciOiJSMjU2In0.eyJjbGllbnRJZCI6IjIifQ.SignatureTwoBBBBBBBBBBBBBBBBBB"
TOKEN = "/collection/token/"
RTP = "/collection/v1_0/requesttopay"
REF = "3f0c2a52-8f5e-4d55-9a43-0c1d8f5b6e21"
CALLBACK = "https://gw.example.com/cb/momo/acct_1/s3cr3t"


def tokens(*values: str) -> list[httpx.Response]:
    return [
        reply(200, {"access_token": v, "token_type": "access_token", "expires_in": 3600})
        for v in values
    ]


def momo_error(code: str, message: str = "...") -> dict[str, str]:
    return {"code": code, "message": message}


def make(script: Script, **kwargs: Any) -> MomoClient:
    options: dict[str, Any] = {"retry_wait_initial": 0.001, "retry_wait_max": 0.002}
    options.update(kwargs)
    return MomoClient(
        account_key="acct_1",
        base_url="https://proxy.momoapi.mtn.co.rw/",
        credentials=CREDS,
        http=script.client(),
        tokens=TokenCache(),
        **options,
    )


async def pay(client: MomoClient, **overrides: Any) -> SendResult:
    args: dict[str, Any] = {
        "reference_id": REF,
        "amount": "1500",
        "currency": "RWF",
        "msisdn": "+250 788 123 456",
        "external_id": "pay_123",
        "payer_message": "Mama's shop: order 42",
        "payee_note": "x" * 200,
        "callback_url": CALLBACK,
    }
    args.update(overrides)
    return await client.request_to_pay(**args)


def refs(script: Script) -> list[str]:
    return [r.headers["X-Reference-Id"] for r in script.calls(RTP)]


# ----- request to pay: accepted -----------------------------------------------------------------
async def test_accepted_request_uses_the_documented_headers_and_body() -> None:
    script = Script().on(TOKEN, *tokens(TOKEN_1)).on(RTP, reply(202))
    result = await pay(make(script))
    assert result == SendResult(SendOutcome.ACCEPTED, provider_ref=REF, http_status=202)

    (token_call,) = script.calls(TOKEN)
    assert token_call.method == "POST"
    assert token_call.content == b""
    basic = base64.b64encode(f"{CREDS.api_user}:{CREDS.api_key}".encode()).decode()
    assert token_call.headers["Authorization"] == f"Basic {basic}"
    assert token_call.headers["Ocp-Apim-Subscription-Key"] == "SubKeyCollection0123456789"

    (call,) = script.calls(RTP)
    assert call.method == "POST"
    assert call.headers["Authorization"] == f"Bearer {TOKEN_1}"
    assert call.headers["X-Reference-Id"] == REF
    assert call.headers["X-Target-Environment"] == "mtnrwanda"
    assert call.headers["Ocp-Apim-Subscription-Key"] == "SubKeyCollection0123456789"
    assert call.headers["X-Callback-Url"] == CALLBACK
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers["User-Agent"].startswith("lipwa/")
    assert "python" not in call.headers["User-Agent"].lower()
    assert body_of(call) == {
        "amount": "1500",
        "currency": "RWF",
        "externalId": "pay_123",
        "payer": {"partyIdType": "MSISDN", "partyId": "250788123456"},
        "payerMessage": "Mamas shop: order 42",
        "payeeNote": "x" * 160,
    }
    timeout = call.extensions["timeout"]
    assert (timeout["connect"], timeout["read"]) == (5.0, 15.0)


async def test_without_a_callback_url_no_header_is_sent() -> None:
    script = Script().on(TOKEN, *tokens(TOKEN_1)).on(RTP, reply(202))
    await pay(make(script), callback_url=None)
    assert "X-Callback-Url" not in script.calls(RTP)[0].headers


async def test_409_means_the_original_exists_and_counts_as_accepted() -> None:
    script = Script().on(TOKEN, *tokens(TOKEN_1))
    script.on(RTP, reply(409, momo_error("RESOURCE_ALREADY_EXIST", "Duplicated reference id.")))
    result = await pay(make(script))
    assert result.outcome is SendOutcome.ACCEPTED
    assert result.provider_ref == REF
    assert result.http_status == 409
    assert result.error_code == "RESOURCE_ALREADY_EXIST"
    assert len(script.calls(RTP)) == 1


# ----- request to pay: refusals -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "failure_code", "error_code"),
    [
        (reply(500, momo_error("INVALID_CURRENCY", "Currency not supported.")),
         "invalid_request", "INVALID_CURRENCY"),
        (reply(500, momo_error("NOT_ALLOWED")), "not_allowed", "NOT_ALLOWED"),
        (reply(500, momo_error("NOT_ALLOWED_TARGET_ENVIRONMENT")),
         "not_allowed", "NOT_ALLOWED_TARGET_ENVIRONMENT"),
        (reply(500, momo_error("INVALID_CALLBACK_URL_HOST")),
         "invalid_request", "INVALID_CALLBACK_URL_HOST"),
        (reply(500, momo_error("PAYER_NOT_FOUND")), "payer_not_found", "PAYER_NOT_FOUND"),
        (reply(500, momo_error("PAYEE_NOT_ALLOWED_TO_RECEIVE")),
         "not_allowed", "PAYEE_NOT_ALLOWED_TO_RECEIVE"),
        (reply(400, text=""), "invalid_request", "http_400"),
        (reply(400, momo_error("VALIDATION_ERROR")), "invalid_request", "VALIDATION_ERROR"),
        (reply(403, text="<html>Microsoft-Azure-Application-Gateway</html>"),
         "not_allowed", "http_403"),
        (reply(404, text=""), "invalid_request", "http_404"),
    ],
)  # fmt: skip
async def test_definite_refusals_are_rejected_once(
    answer: httpx.Response, failure_code: str, error_code: str
) -> None:
    script = Script().on(TOKEN, *tokens(TOKEN_1)).on(RTP, answer)
    result = await pay(make(script))
    assert result.outcome is SendOutcome.REJECTED
    assert result.failure_code == failure_code
    assert result.error_code == error_code
    assert result.transient is False
    assert len(script.calls(RTP)) == 1


async def test_401_refreshes_the_token_and_retries_once_with_the_same_reference() -> None:
    script = Script().on(TOKEN, *tokens(TOKEN_1, TOKEN_2)).on(RTP, reply(401), reply(202))
    result = await pay(make(script))
    assert result.outcome is SendOutcome.ACCEPTED
    first, second = script.calls(RTP)
    assert first.headers["Authorization"] == f"Bearer {TOKEN_1}"
    assert second.headers["Authorization"] == f"Bearer {TOKEN_2}"
    assert refs(script) == [REF, REF]


async def test_401_twice_is_rejected() -> None:
    script = Script().on(TOKEN, *tokens(TOKEN_1, TOKEN_2, "third")).on(RTP, reply(401))
    result = await pay(make(script))
    assert result.outcome is SendOutcome.REJECTED
    assert result.failure_code == "not_allowed"
    assert len(script.calls(RTP)) == 2


# ----- request to pay: retries with the same X-Reference-Id ------------------------------------
@pytest.mark.parametrize(
    "first",
    [
        reply(503, momo_error("SERVICE_UNAVAILABLE")),
        reply(500, momo_error("INTERNAL_PROCESSING_ERROR")),
        reply(502, text="<html>bad gateway</html>"),
        httpx.ReadTimeout("slow"),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("reset"),
        reply(429, text=""),
    ],
)
async def test_transient_trouble_is_retried_with_the_same_reference(
    first: httpx.Response | Exception,
) -> None:
    script = Script().on(TOKEN, *tokens(TOKEN_1)).on(RTP, first, first, reply(202))
    result = await pay(make(script))
    assert result.outcome is SendOutcome.ACCEPTED
    assert result.provider_ref == REF
    assert refs(script) == [REF, REF, REF]


async def test_timeout_then_409_means_the_first_attempt_created_it() -> None:
    script = Script().on(TOKEN, *tokens(TOKEN_1))
    script.on(RTP, httpx.ReadTimeout("slow"), reply(409, momo_error("RESOURCE_ALREADY_EXIST")))
    result = await pay(make(script))
    assert result.outcome is SendOutcome.ACCEPTED
    assert refs(script) == [REF, REF]


async def test_still_failing_after_the_budget_is_ambiguous() -> None:
    script = Script().on(TOKEN, *tokens(TOKEN_1))
    script.on(RTP, reply(500, momo_error("INTERNAL_PROCESSING_ERROR", "An internal error")))
    result = await pay(make(script, retry_attempts=3))
    assert result.outcome is SendOutcome.AMBIGUOUS
    assert result.provider_ref == REF  # GET it to find out
    assert result.error_code == "INTERNAL_PROCESSING_ERROR"
    assert refs(script) == [REF, REF, REF]


async def test_timeouts_until_the_end_are_ambiguous() -> None:
    script = Script().on(TOKEN, *tokens(TOKEN_1)).on(RTP, httpx.ReadTimeout("slow"))
    result = await pay(make(script, retry_attempts=2))
    assert result.outcome is SendOutcome.AMBIGUOUS
    assert result.error_code == "timeout"
    assert len(script.calls(RTP)) == 2


async def test_never_connected_is_a_transient_rejection() -> None:
    script = Script().on(TOKEN, *tokens(TOKEN_1)).on(RTP, httpx.ConnectError("refused"))
    result = await pay(make(script, retry_attempts=2))
    assert result.outcome is SendOutcome.REJECTED
    assert result.transient is True
    assert result.failure_code == "provider_unavailable"


async def test_a_refusal_after_a_lost_attempt_stays_ambiguous() -> None:
    """The lost attempt may have created it: only a GET can tell, so never REJECTED."""
    script = Script().on(TOKEN, *tokens(TOKEN_1))
    script.on(RTP, httpx.ReadTimeout("slow"), reply(500, momo_error("NOT_ALLOWED")))
    result = await pay(make(script))
    assert result.outcome is SendOutcome.AMBIGUOUS
    assert result.error_code == "NOT_ALLOWED"


async def test_connect_errors_then_timeout_is_ambiguous() -> None:
    script = Script().on(TOKEN, *tokens(TOKEN_1))
    script.on(RTP, httpx.ReadTimeout("slow"), httpx.ConnectError("refused"))
    result = await pay(make(script, retry_attempts=2))
    assert result.outcome is SendOutcome.AMBIGUOUS


async def test_the_retry_budget_bounds_the_total_time() -> None:
    script = Script().on(TOKEN, *tokens(TOKEN_1)).on(RTP, reply(503))
    client = make(
        script, retry_attempts=1000, retry_timeout=0.2, retry_wait_initial=0.05, retry_wait_max=0.05
    )
    result = await pay(client)
    assert result.outcome is SendOutcome.AMBIGUOUS
    assert 2 <= len(script.calls(RTP)) < 20


# ----- token ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "error_code", "transient"),
    [
        (reply(401, {"error": "login_failed"}), "login_failed", False),
        (reply(500, {"error": "login_failed"}), "login_failed", False),
        (reply(401, {"statusCode": 401, "message": "Access denied: invalid subscription key."}),
         "http_401", False),
        (reply(503, text=""), "http_503", True),
    ],
)  # fmt: skip
async def test_token_refusals(answer: httpx.Response, error_code: str, transient: bool) -> None:
    script = Script().on(TOKEN, answer).on(RTP, reply(202))
    failure = await make(script).check_credentials()
    assert isinstance(failure, QueryFailure)
    assert failure.error_code == error_code
    result = await pay(make(script, retry_attempts=2))
    assert result.outcome is SendOutcome.REJECTED
    assert result.transient is transient
    assert result.failure_code == ("provider_unavailable" if transient else "not_allowed")
    assert script.calls(RTP) == []


async def test_check_credentials_ok() -> None:
    script = Script().on(TOKEN, *tokens(TOKEN_1))
    assert await make(script).check_credentials() is None


async def test_missing_subscription_key_is_reported_without_a_call() -> None:
    script = Script().on(TOKEN, *tokens(TOKEN_1))
    client = MomoClient(
        account_key="a",
        base_url="https://sandbox.momodeveloper.mtn.com",
        credentials=MomoCredentials("u", "k", {}, "sandbox", "EUR"),
        http=script.client(),
        tokens=TokenCache(),
    )
    failure = await client.check_credentials()
    assert isinstance(failure, QueryFailure)
    assert failure.error_code == "missing_subscription_key"
    assert script.requests == []


# ----- status -----------------------------------------------------------------------------------
STATUS = f"{RTP}/{REF}"


async def status(*answers: httpx.Response | Exception) -> tuple[object, Script]:
    script = Script().on(TOKEN, *tokens(TOKEN_1, TOKEN_2)).on(STATUS, *answers)
    return await make(script).get_request_to_pay(REF), script


async def test_status_successful() -> None:
    report, script = await status(
        reply(
            200,
            {
                "financialTransactionId": "1530828708",
                "externalId": "pay_123",
                "amount": "1500",
                "currency": "RWF",
                "payer": {"partyIdType": "MSISDN", "partyId": "250788123456"},
                "payerMessage": "Order 42",
                "payeeNote": "Thanks",
                "status": "SUCCESSFUL",
            },
        )
    )
    assert report == ProviderReport(
        ReportState.SUCCEEDED,
        provider_ref=REF,
        raw_code="SUCCESSFUL",
        receipt="1530828708",
        amount=Decimal("1500"),
        phone="250788123456",
        external_id="pay_123",
    )
    (call,) = script.calls(STATUS)
    assert call.method == "GET"
    assert call.headers["X-Target-Environment"] == "mtnrwanda"


@pytest.mark.parametrize(
    ("reason", "failure_code", "raw_code", "raw_message"),
    [
        ("APPROVAL_REJECTED", "payer_declined", "APPROVAL_REJECTED", None),
        ({"code": "PAYER_NOT_FOUND", "message": "Payer not found"}, "payer_not_found",
         "PAYER_NOT_FOUND", "Payer not found"),
        ({"code": "NOT_ENOUGH_FUNDS", "message": "No funds"}, "insufficient_funds",
         "NOT_ENOUGH_FUNDS", "No funds"),
        ("SOMETHING_NEW", "unknown_failure", "SOMETHING_NEW", None),
        (None, "unknown_failure", "FAILED", None),
    ],
)  # fmt: skip
async def test_status_failed_with_string_or_object_reason(
    reason: object, failure_code: str, raw_code: str, raw_message: str | None
) -> None:
    body: dict[str, Any] = {"externalId": "pay_123", "amount": 1500, "status": "FAILED"}
    if reason is not None:
        body["reason"] = reason
    report, _ = await status(reply(200, body))
    assert isinstance(report, ProviderReport)
    assert report.state is ReportState.FAILED
    assert (report.failure_code, report.raw_code, report.raw_message) == (
        failure_code,
        raw_code,
        raw_message,
    )
    assert report.amount == Decimal(1500)
    assert report.receipt is None


@pytest.mark.parametrize("value", ["PENDING", "CREATED", "pending", "SOMETHING_ELSE"])
async def test_status_pending(value: str) -> None:
    report, _ = await status(reply(200, {"status": value, "amount": "1"}))
    assert isinstance(report, ProviderReport)
    assert report.state is ReportState.PENDING


async def test_status_not_found() -> None:
    report, _ = await status(
        reply(404, momo_error("RESOURCE_NOT_FOUND", "Requested resource was not found."))
    )
    assert report == ProviderReport(
        ReportState.NOT_FOUND,
        provider_ref=REF,
        raw_code="RESOURCE_NOT_FOUND",
        raw_message="Requested resource was not found.",
    )


async def test_status_401_retries_once() -> None:
    report, script = await status(reply(401), reply(200, {"status": "PENDING"}))
    assert isinstance(report, ProviderReport)
    assert len(script.calls(STATUS)) == 2
    first, second = script.calls(STATUS)
    assert first.headers["Authorization"] != second.headers["Authorization"]


@pytest.mark.parametrize(
    ("answer", "error_code"),
    [
        (reply(500, momo_error("INTERNAL_PROCESSING_ERROR")), "INTERNAL_PROCESSING_ERROR"),
        (reply(404, text="<html>not here</html>"), "http_404"),
        (reply(200, text="nope"), "invalid_response"),
        (reply(200, {"amount": "1"}), "invalid_response"),
        (reply(400, text=""), "http_400"),
        (httpx.ReadTimeout("slow"), "timeout"),
        (httpx.ConnectError("refused"), "network_error"),
    ],
)
async def test_status_failures(answer: httpx.Response | Exception, error_code: str) -> None:
    report, script = await status(answer)
    assert isinstance(report, QueryFailure)
    assert report.error_code == error_code
    assert len(script.calls(STATUS)) == 1


# ----- secrets ----------------------------------------------------------------------------------
async def test_secrets_never_appear_in_results() -> None:
    echo = f"{TOKEN_1} {TOKEN_2} {CREDS.api_key} SubKeyCollection0123456789"
    answers: list[Step] = [
        reply(401, momo_error("UNAUTHORIZED", echo)),
        reply(500, momo_error("NOT_ALLOWED", echo)),
        reply(400, momo_error("BAD", echo)),
        reply(503, momo_error("SERVICE_UNAVAILABLE", echo)),
        reply(409, momo_error("RESOURCE_ALREADY_EXIST", echo)),
        reply(404, momo_error("RESOURCE_NOT_FOUND", echo)),
        reply(200, {"status": "FAILED", "reason": {"code": "X", "message": echo}}),
        httpx.ReadTimeout(echo),
    ]
    outputs: list[object] = [CREDS]
    for answer in answers:
        script = Script().on(TOKEN, *tokens(TOKEN_1, TOKEN_2)).on(RTP, answer).on(STATUS, answer)
        client = make(script, retry_attempts=1)
        outputs += [await pay(client), await client.get_request_to_pay(REF), client]
    bad = Script().on(TOKEN, reply(401, {"error": f"login_failed {CREDS.api_key}"}))
    outputs += [await make(bad).check_credentials(), await pay(make(bad))]
    basic = base64.b64encode(f"{CREDS.api_user}:{CREDS.api_key}".encode()).decode()
    secrets = [TOKEN_1, TOKEN_2, CREDS.api_key, "SubKeyCollection0123456789", basic]
    for output in outputs:
        for text in (repr(output), str(output)):
            for secret in secrets:
                assert secret not in text, (secret, text)


def test_reference_ids_in_tests_are_uuid4() -> None:
    assert uuid.UUID(REF).version == 4
