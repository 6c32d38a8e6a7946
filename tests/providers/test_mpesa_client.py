"""MpesaClient against a scripted Daraja (httpx.MockTransport): every branch."""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from lipwa.providers.base import ProviderReport, QueryFailure, ReportState, SendOutcome, SendResult
from lipwa.providers.mpesa import MpesaClient, MpesaCredentials
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
            return httpx.Response(404, json={"errorCode": "404.001.01", "errorMessage": "nope"})
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


PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
OFFICIAL_PASSWORD = (
    "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZGExZWQy"
    "YzkxOTIwMjEwNjI4MDkyNDA4"
)
CREDS = MpesaCredentials(
    consumer_key="ConsumerKeyAbc123",
    consumer_secret="ConsumerSecretXyz789",
    shortcode="174379",
    kind="paybill",
    passkey=PASSKEY,
)
TILL_CREDS = MpesaCredentials(
    consumer_key="ConsumerKeyAbc123",
    consumer_secret="ConsumerSecretXyz789",
    shortcode="300584",
    kind="till",
    passkey=PASSKEY,
    till_number="5512345",
)
# 06:24:08 UTC is 09:24:08 in Nairobi: the timestamp of Safaricom's official sample password.
NOW = datetime(2021, 6, 28, 6, 24, 8, tzinfo=UTC)
TOKEN_1 = "TokenNumberOneAAAAAAAAAAAAAAA"
TOKEN_2 = "TokenNumberTwoBBBBBBBBBBBBBBB"

OAUTH = "/oauth/v1/generate"
PUSH = "/mpesa/stkpush/v1/processrequest"
QUERY = "/mpesa/stkpushquery/v1/query"
ACCEPTED_BODY = {
    "MerchantRequestID": "29115-34620561-1",
    "CheckoutRequestID": "ws_CO_191220191020363925",
    "ResponseCode": "0",
    "ResponseDescription": "Success. Request accepted for processing",
    "CustomerMessage": "Success. Request accepted for processing",
}


def daraja_error(code: str, message: str) -> dict[str, str]:
    return {"requestId": "1c5b-4ba8-815c", "errorCode": code, "errorMessage": message}


def tokens(*values: str, expires_in: object = "3599") -> list[httpx.Response]:
    return [reply(200, {"access_token": v, "expires_in": expires_in}) for v in values]


def make(script: Script, credentials: MpesaCredentials = CREDS, **kwargs: object) -> MpesaClient:
    return MpesaClient(
        account_key="acct_1",
        base_url="https://sandbox.safaricom.co.ke/",
        credentials=credentials,
        http=script.client(),
        tokens=TokenCache(),
        clock=lambda: NOW,
        **kwargs,  # type: ignore[arg-type]
    )


async def push(client: MpesaClient, **overrides: object) -> SendResult:
    args: dict[str, object] = {
        "amount": 10,
        "phone": "+254 708 374 149",
        "account_reference": "INV-0001-LONGER-THAN-12",
        "description": "Payment for order 42",
        "callback_url": "https://gw.example.com/cb/mpesa/acct_1/s3cr3t",
    }
    args.update(overrides)
    return await client.stk_push(**args)  # type: ignore[arg-type]


# ----- STK push: accepted -------------------------------------------------------------------------
async def test_push_accepted_builds_the_documented_paybill_request() -> None:
    script = Script().on(OAUTH, *tokens(TOKEN_1)).on(PUSH, reply(200, ACCEPTED_BODY))
    result = await push(make(script))

    assert result == SendResult(
        SendOutcome.ACCEPTED,
        provider_ref="ws_CO_191220191020363925",
        secondary_ref="29115-34620561-1",
        http_status=200,
    )
    (token_call,) = script.calls(OAUTH)
    assert token_call.method == "GET"
    assert token_call.url.params["grant_type"] == "client_credentials"
    basic = base64.b64encode(b"ConsumerKeyAbc123:ConsumerSecretXyz789").decode()
    assert token_call.headers["Authorization"] == f"Basic {basic}"

    (call,) = script.calls(PUSH)
    assert call.headers["Authorization"] == f"Bearer {TOKEN_1}"
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers["User-Agent"].startswith("lipwa/")
    assert body_of(call) == {
        "BusinessShortCode": "174379",
        "Password": OFFICIAL_PASSWORD,
        "Timestamp": "20210628092408",
        "TransactionType": "CustomerPayBillOnline",
        "Amount": 10,
        "PartyA": "254708374149",
        "PartyB": "174379",
        "PhoneNumber": "254708374149",
        "CallBackURL": "https://gw.example.com/cb/mpesa/acct_1/s3cr3t",
        "AccountReference": "INV-0001-LON",
        "TransactionDesc": "Payment for o",
    }


async def test_push_for_a_till_uses_buy_goods_and_the_till_as_party_b() -> None:
    script = Script().on(OAUTH, *tokens(TOKEN_1)).on(PUSH, reply(200, ACCEPTED_BODY))
    await push(make(script, TILL_CREDS))
    body = body_of(script.calls(PUSH)[0])
    assert body["TransactionType"] == "CustomerBuyGoodsOnline"
    assert body["BusinessShortCode"] == "300584"
    assert body["PartyB"] == "5512345"
    expected = base64.b64encode(f"300584{PASSKEY}20210628092408".encode()).decode()
    assert body["Password"] == expected


def test_a_till_without_till_number_is_refused() -> None:
    with pytest.raises(ValueError, match="till_number"):
        MpesaCredentials(
            consumer_key="k", consumer_secret="s", shortcode="1", kind="till", passkey="p"
        )


async def test_per_call_timeouts_are_passed() -> None:
    script = Script().on(OAUTH, *tokens(TOKEN_1)).on(PUSH, reply(200, ACCEPTED_BODY))
    await push(make(script, connect_timeout=2.0, read_timeout=7.0))
    timeout = script.calls(PUSH)[0].extensions["timeout"]
    assert timeout["connect"] == 2.0
    assert timeout["read"] == 7.0


async def test_the_token_is_cached_between_calls() -> None:
    script = Script().on(OAUTH, *tokens(TOKEN_1, TOKEN_2)).on(PUSH, reply(200, ACCEPTED_BODY))
    client = make(script)
    await push(client)
    await push(client)
    assert len(script.calls(OAUTH)) == 1
    assert len(script.calls(PUSH)) == 2


# ----- STK push: refusals and ambiguity ---------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "body", "outcome", "failure_code", "transient"),
    [
        (400, daraja_error("400.002.02", "Bad Request - Invalid PhoneNumber"),
         SendOutcome.REJECTED, "invalid_request", False),
        (400, daraja_error("400.002.02", "Bad Request - Invalid Amount"),
         SendOutcome.REJECTED, "invalid_request", False),
        (500, daraja_error("500.001.1001", "Unable to lock subscriber, a transaction is already "
                           "in process for the current subscriber"),
         SendOutcome.REJECTED, "subscriber_busy", True),
        (500, daraja_error("500.001.1001", "Wrong credentials"),
         SendOutcome.REJECTED, "not_allowed", False),
        (500, daraja_error("500.001.1001", "Merchant does not exist"),
         SendOutcome.REJECTED, "not_allowed", False),
        (500, daraja_error("500.003.02", "Error Occurred: Spike Arrest Violation"),
         SendOutcome.REJECTED, "provider_unavailable", True),
        (500, daraja_error("500.003.03", "Error Occurred: Quota Violation"),
         SendOutcome.REJECTED, "provider_unavailable", True),
        (500, daraja_error("500.002.1001", "Service is currently under maintenance. Please try "
                           "again later"),
         SendOutcome.REJECTED, "provider_unavailable", True),
        (405, daraja_error("405.001", "Method Not Allowed"),
         SendOutcome.REJECTED, "invalid_request", False),
        (200, {"ResponseCode": "1", "ResponseDescription": "Rejected"},
         SendOutcome.REJECTED, "rejected_by_provider", False),
        (403, "<html>Forbidden</html>", SendOutcome.REJECTED, "not_allowed", False),
        (500, daraja_error("500.003.1001", "Internal Server Error"),
         SendOutcome.AMBIGUOUS, None, False),
        (503, None, SendOutcome.AMBIGUOUS, None, False),
        (502, "<html>Bad gateway</html>", SendOutcome.AMBIGUOUS, None, False),
        (200, "<html>ok?</html>", SendOutcome.AMBIGUOUS, None, False),
        (200, {"ResponseCode": "0"}, SendOutcome.AMBIGUOUS, None, False),
    ],
)  # fmt: skip
async def test_push_error_answers(
    status: int, body: object, outcome: SendOutcome, failure_code: str | None, transient: bool
) -> None:
    answer = reply(status, text=body) if isinstance(body, str) else reply(status, body)
    script = Script().on(OAUTH, *tokens(TOKEN_1)).on(PUSH, answer)
    result = await push(make(script))
    assert result.outcome is outcome
    assert result.failure_code == failure_code
    assert result.transient is transient
    assert result.http_status == status
    assert result.provider_ref is None
    assert len(script.calls(PUSH)) == 1  # never retried
    if isinstance(body, dict) and "errorCode" in body:
        assert result.error_code == body["errorCode"]
        assert result.error_message == body["errorMessage"]


async def test_push_answer_without_a_response_code_keeps_its_checkout_id_to_query() -> None:
    body = {"MerchantRequestID": "29115-1", "CheckoutRequestID": "ws_CO_191220191020363925"}
    script = Script().on(OAUTH, *tokens(TOKEN_1)).on(PUSH, reply(200, body))
    result = await push(make(script))
    assert result.outcome is SendOutcome.AMBIGUOUS  # never assumed accepted nor refused
    assert result.provider_ref == "ws_CO_191220191020363925"  # recovery queries by it
    assert len(script.calls(PUSH)) == 1


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.WriteTimeout("write timed out"),
        httpx.RemoteProtocolError("server disconnected"),
        httpx.ReadError("connection reset"),
    ],
)
async def test_push_without_an_answer_after_sending_is_ambiguous_and_not_resent(
    exc: Exception,
) -> None:
    script = Script().on(OAUTH, *tokens(TOKEN_1)).on(PUSH, exc, reply(200, ACCEPTED_BODY))
    result = await push(make(script))
    assert result.outcome is SendOutcome.AMBIGUOUS
    assert result.error_code in {"timeout", "network_error"}
    assert len(script.calls(PUSH)) == 1


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow")])
async def test_push_that_never_left_is_rejected_as_transient(exc: Exception) -> None:
    script = Script().on(OAUTH, *tokens(TOKEN_1)).on(PUSH, exc)
    result = await push(make(script))
    assert result.outcome is SendOutcome.REJECTED
    assert result.failure_code == "provider_unavailable"
    assert result.transient is True


@pytest.mark.parametrize(
    ("status", "code"),
    [(404, "404.001.03"), (401, "401.002.01"), (400, "400.003.01")],
)
async def test_invalid_token_refreshes_and_retries_exactly_once(status: int, code: str) -> None:
    script = (
        Script()
        .on(OAUTH, *tokens(TOKEN_1, TOKEN_2))
        .on(
            PUSH,
            reply(status, daraja_error(code, "Invalid Access Token")),
            reply(200, ACCEPTED_BODY),
        )
    )
    result = await push(make(script))
    assert result.outcome is SendOutcome.ACCEPTED
    first, second = script.calls(PUSH)
    assert first.headers["Authorization"] == f"Bearer {TOKEN_1}"
    assert second.headers["Authorization"] == f"Bearer {TOKEN_2}"
    assert len(script.calls(OAUTH)) == 2


async def test_invalid_token_twice_is_rejected_after_one_retry() -> None:
    refused = reply(
        401, daraja_error("401.002.01", f"Error Occurred - Invalid Access Token - {TOKEN_2}")
    )
    script = Script().on(OAUTH, *tokens(TOKEN_1, TOKEN_2, "TokenThree")).on(PUSH, refused)
    result = await push(make(script))
    assert result.outcome is SendOutcome.REJECTED
    assert result.failure_code == "not_allowed"
    assert len(script.calls(PUSH)) == 2
    assert TOKEN_2 not in (result.error_message or "")
    assert "[REDACTED]" in (result.error_message or "")


@pytest.mark.parametrize(
    ("answer", "transient", "error_code"),
    [
        (reply(400, daraja_error("400.008.01", "Invalid authentication type passed")),
         False, "400.008.01"),
        (reply(400, text=""), False, "http_400"),
        (reply(503, text="<html>down</html>"), True, "http_503"),
        (httpx.ConnectError("refused"), True, "network_error"),
        (httpx.ReadTimeout("slow"), True, "timeout"),
        (reply(200, {"expires_in": "3599"}), True, "invalid_response"),
    ],
)  # fmt: skip
async def test_token_failure_rejects_the_push_without_sending_it(
    answer: httpx.Response | Exception, transient: bool, error_code: str
) -> None:
    script = Script().on(OAUTH, answer).on(PUSH, reply(200, ACCEPTED_BODY))
    result = await push(make(script))
    assert result.outcome is SendOutcome.REJECTED
    assert result.transient is transient
    assert result.failure_code == ("provider_unavailable" if transient else "not_allowed")
    assert result.error_code == error_code
    assert script.calls(PUSH) == []


@pytest.mark.parametrize("expires_in", ["3599", 3599, None, "soon"])
async def test_token_expiry_is_read_as_string_or_number(expires_in: object) -> None:
    script = Script().on(OAUTH, *tokens(TOKEN_1, expires_in=expires_in))
    script.on(PUSH, reply(200, ACCEPTED_BODY))
    assert (await push(make(script))).outcome is SendOutcome.ACCEPTED


# ----- STK query --------------------------------------------------------------------------------
def query_answer(result_code: object, desc: str) -> httpx.Response:
    return reply(
        200,
        {
            "ResponseCode": "0",
            "ResponseDescription": "The service request has been accepted successsfully",
            "MerchantRequestID": "29115-34620561-1",
            "CheckoutRequestID": "ws_CO_1",
            "ResultCode": result_code,
            "ResultDesc": desc,
        },
    )


async def query(*answers: httpx.Response | Exception) -> tuple[object, Script]:
    script = Script().on(OAUTH, *tokens(TOKEN_1, TOKEN_2)).on(QUERY, *answers)
    return await make(script).stk_query("ws_CO_1"), script


async def test_query_sends_the_documented_body() -> None:
    _, script = await query(query_answer("0", "ok"))
    assert body_of(script.calls(QUERY)[0]) == {
        "BusinessShortCode": "174379",
        "Password": OFFICIAL_PASSWORD,
        "Timestamp": "20210628092408",
        "CheckoutRequestID": "ws_CO_1",
    }


async def test_query_while_the_prompt_is_open_is_pending() -> None:
    report, _ = await query(
        reply(500, daraja_error("500.001.1001", "The transaction is being processed"))
    )
    assert report == ProviderReport(
        ReportState.PENDING,
        provider_ref="ws_CO_1",
        raw_code="500.001.1001",
        raw_message="The transaction is being processed",
    )


@pytest.mark.parametrize(
    ("code", "state", "failure_code"),
    [
        ("1032", ReportState.FAILED, "payer_declined"),
        (1037, ReportState.FAILED, "payer_unreachable"),
        ("1", ReportState.FAILED, "insufficient_funds"),
        ("4999", ReportState.PENDING, None),
        ("777", ReportState.FAILED, "unknown_failure"),
    ],
)
async def test_query_result_codes(code: object, state: ReportState, failure_code: str) -> None:
    report, _ = await query(query_answer(code, "whatever"))
    assert isinstance(report, ProviderReport)
    assert report.state is state
    assert report.failure_code == failure_code
    assert report.raw_code == str(code)
    assert report.raw_message == "whatever"


async def test_query_success_is_final_but_carries_no_receipt() -> None:
    report, _ = await query(query_answer("0", "The service request is processed successfully."))
    assert isinstance(report, ProviderReport)
    assert report.state is ReportState.SUCCEEDED
    assert report.receipt is None
    assert report.raw_code == "0"


async def test_query_for_an_unknown_checkout_id_is_not_found() -> None:
    report, _ = await query(
        reply(400, daraja_error("400.002.02", "Bad Request - Invalid CheckoutRequestID"))
    )
    assert isinstance(report, ProviderReport)
    assert report.state is ReportState.NOT_FOUND


@pytest.mark.parametrize("code", [None, "", " ", True])
async def test_a_query_answer_with_no_result_code_is_no_answer(code: object) -> None:
    """A null or blank ResultCode says nothing: never a (final) failure of an open prompt."""
    report, _ = await query(query_answer(code, "whatever"))
    assert isinstance(report, QueryFailure)
    assert report.error_code == "invalid_response"


async def test_query_answer_about_another_checkout_id_is_a_failure() -> None:
    body = json.loads(query_answer("0", "ok").content)
    body["CheckoutRequestID"] = "ws_CO_other"
    report, _ = await query(reply(200, body))
    assert isinstance(report, QueryFailure)


@pytest.mark.parametrize(
    ("answer", "error_code"),
    [
        (reply(500, daraja_error("500.003.02", "Spike Arrest Violation")), "500.003.02"),
        (reply(503, text=""), "http_503"),
        (reply(200, text="not json"), "invalid_response"),
        (reply(400, daraja_error("400.002.02", "Bad Request - Invalid BusinessShortCode")),
         "400.002.02"),
        (httpx.ReadTimeout("slow"), "timeout"),
        (httpx.ConnectError("refused"), "network_error"),
    ],
)  # fmt: skip
async def test_query_failures(answer: httpx.Response | Exception, error_code: str) -> None:
    report, script = await query(answer)
    assert isinstance(report, QueryFailure)
    assert report.error_code == error_code
    assert len(script.calls(QUERY)) == 1


async def test_query_retries_once_on_invalid_token() -> None:
    report, script = await query(
        reply(404, daraja_error("404.001.03", "Invalid Access Token")), query_answer("1032", "x")
    )
    assert isinstance(report, ProviderReport)
    assert report.state is ReportState.FAILED
    assert len(script.calls(QUERY)) == 2


async def test_query_token_failure_is_a_query_failure() -> None:
    script = Script().on(OAUTH, reply(400, daraja_error("400.008.02", "Invalid grant type passed")))
    report = await make(script).stk_query("ws_CO_1")
    assert report == QueryFailure("400.008.02", "Invalid grant type passed", 400)


# ----- credentials check ------------------------------------------------------------------------
async def test_check_credentials() -> None:
    good = Script().on(OAUTH, *tokens(TOKEN_1))
    assert await make(good).check_credentials() is None
    bad = Script().on(OAUTH, reply(401, text=""))
    failure = await make(bad).check_credentials()
    assert isinstance(failure, QueryFailure)
    assert failure.http_status == 401


# ----- secrets ----------------------------------------------------------------------------------
async def test_secrets_never_appear_in_results() -> None:
    """Run every kind of answer, including errors that echo the token and the password."""
    password = OFFICIAL_PASSWORD
    echoing: list[Step] = [
        reply(401, daraja_error("401.002.01", f"Invalid Access Token - {TOKEN_1}")),
        reply(500, daraja_error("500.001.1001", f"Wrong credentials {password} {PASSKEY}")),
        reply(400, daraja_error("400.002.02", f"Bad {CREDS.consumer_secret} {CREDS.consumer_key}")),
        reply(500, daraja_error("500.003.1001", f"Internal Server Error {TOKEN_2}")),
        reply(200, {"ResponseCode": "9", "ResponseDescription": f"x {PASSKEY}"}),
        httpx.ReadTimeout(f"timeout {TOKEN_1}"),
        reply(200, ACCEPTED_BODY),
    ]
    outputs: list[object] = []
    for answer in echoing:
        script = Script().on(OAUTH, *tokens(TOKEN_1, TOKEN_2)).on(PUSH, answer).on(QUERY, answer)
        client = make(script)
        outputs += [await push(client), await client.stk_query("ws_CO_1"), client]
    bad_oauth = Script().on(
        OAUTH, reply(400, daraja_error("400.008.01", f"bad {CREDS.consumer_secret}"))
    )
    outputs += [await make(bad_oauth).check_credentials(), await push(make(bad_oauth)), CREDS]
    secrets = [
        PASSKEY,
        password,
        TOKEN_1,
        TOKEN_2,
        CREDS.consumer_secret,
        CREDS.consumer_key,
        base64.b64encode(b"ConsumerKeyAbc123:ConsumerSecretXyz789").decode(),
    ]
    for output in outputs:
        for text in (repr(output), str(output)):
            for secret in secrets:
                assert secret not in text, (secret, text)
