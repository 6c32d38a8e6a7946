"""HTTP plumbing both provider clients share: construction, token keys, transport failures.

Only what is the same for Daraja and MoMo lives here; each client keeps its own wire format,
answer reading and retry rule. ``who`` names the provider in messages ("Daraja", "MoMo").
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import httpx

from lipwa import __version__
from lipwa.providers.base import QueryFailure, SendOutcome, SendResult
from lipwa.providers.tokens import TokenCache

USER_AGENT = f"lipwa/{__version__}"

# Raised before the request left this process: safe to report as "not sent".
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class TokenError(Exception):
    """No token; ``transient`` is read by metrics (a non-transient refusal is a credential
    failure) and by the send paths (outage vs not allowed)."""

    def __init__(self, failure: QueryFailure, transient: bool) -> None:
        super().__init__(failure.error_message)
        self.failure = failure
        self.transient = transient


@dataclass(frozen=True)
class NoAnswer:
    """The call produced no HTTP answer."""

    sent: bool  # False: failed before the request left (connect error); True: may have arrived
    error_code: str
    message: str


class ProviderHttp:
    """One merchant account's endpoint: base URL, shared connection pool, token cache,
    timeouts and User-Agent. The clients subclass it and keep their own constructors."""

    def __init__(
        self,
        *,
        account_key: str,
        base_url: str,
        http: httpx.AsyncClient,
        tokens: TokenCache,
        connect_timeout: float,
        read_timeout: float,
        user_agent: str,
    ) -> None:
        self.account_key = account_key
        self.base_url = base_url.rstrip("/")
        self._http = http
        self._tokens = tokens
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._user_agent = user_agent

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(account_key={self.account_key!r}, base_url={self.base_url!r})"


def fingerprint(*parts: str) -> str:
    """A short digest of what identifies the credentials, for token-cache keys: rotated
    credentials never reuse a token minted for the old ones."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def basic_auth(user: str, secret: str) -> str:
    return base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")


def no_answer(exc: httpx.RequestError, who: str) -> NoAnswer:
    """What a failed call means: not sent (connect error) or maybe arrived."""
    name = type(exc).__name__
    if isinstance(exc, NOT_SENT):
        return NoAnswer(False, "network_error", f"{who} unreachable ({name})")
    if isinstance(exc, httpx.TimeoutException):
        return NoAnswer(True, "timeout", f"no answer from {who} ({name})")
    return NoAnswer(True, "network_error", f"{who} call failed ({name})")


def token_unreachable(exc: httpx.RequestError, endpoint: str, unreachable: str) -> TokenError:
    """A token call without an answer: always transient."""
    name = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        failure = QueryFailure("timeout", f"no answer from {endpoint} ({name})")
    else:
        failure = QueryFailure("network_error", f"{unreachable} unreachable ({name})")
    return TokenError(failure, transient=True)


def token_refused(exc: TokenError) -> SendResult:
    """A send that never went out for want of a token."""
    return SendResult(
        SendOutcome.REJECTED,
        error_code=exc.failure.error_code,
        error_message=exc.failure.error_message,
        http_status=exc.failure.http_status,
        failure_code="provider_unavailable" if exc.transient else "not_allowed",
        transient=exc.transient,
    )


def unanswered(answer: NoAnswer) -> SendResult:
    """A send without an answer: AMBIGUOUS if it may have arrived, else a transient refusal."""
    if answer.sent:
        return SendResult(
            SendOutcome.AMBIGUOUS, error_code=answer.error_code, error_message=answer.message
        )
    return SendResult(
        SendOutcome.REJECTED,
        error_code=answer.error_code,
        error_message=answer.message,
        failure_code="provider_unavailable",
        transient=True,
    )


def expires_in(value: object, default: float) -> float:
    """``expires_in`` arrives as "3599" or 3599; anything odd means the documented default."""
    try:
        seconds = float(str(value))
    except ValueError:
        return default
    return seconds if 0 < seconds < 10 * default else default
