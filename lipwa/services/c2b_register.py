"""Registering an M-Pesa account's C2B URLs with Daraja, and the account's validation rules.

The URLs are ``<public_url>/callbacks/<account token>/c2b-validate`` and ``…/c2b-confirm``.
Daraja refuses C2B URLs containing "mpesa", "m-pesa", "safaricom", "exe", "exec", "cmd",
"sql" or "query" in any case, so they are checked before anything is sent. Callback tokens
are random url-safe strings and a few in a thousand contain such a word (e.g. ``SqL``);
Lipwa does not change a token on its own (payments in flight use it): the registration is
refused with a message saying which word and where, and the operator adds the account again
(a new token) or changes LIPWA_PUBLIC_URL.

No session is held across the Daraja call: the account is read, the call is made, then the
registration is recorded in a second transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipwa.clock import isoformat, utcnow
from lipwa.domain.c2b import parse_rules
from lipwa.domain.errors import DomainError
from lipwa.errors import ApiError, invalid
from lipwa.providers.mpesa.c2b import RESPONSE_TYPES, forbidden_words
from lipwa.services import audit
from lipwa.services.accounts import NotFound, callback_base
from lipwa.services.providers import ProviderRegistry
from lipwa.store.tables import ProviderAccount


@dataclass(frozen=True)
class C2bUrls:
    validation: str
    confirmation: str


def c2b_urls(public_url: str, account: ProviderAccount) -> C2bUrls:
    base = callback_base(public_url, account)
    return C2bUrls(validation=f"{base}/c2b-validate", confirmation=f"{base}/c2b-confirm")


def url_problem(public_url: str, account: ProviderAccount) -> str | None:
    """Why Daraja would refuse this account's C2B URLs, or None when they pass its rules."""
    in_public = forbidden_words(public_url)
    if in_public:
        return (
            f"Daraja refuses C2B URLs containing {', '.join(repr(w) for w in in_public)} (in any "
            "case), and LIPWA_PUBLIC_URL contains it: serve the callbacks from a URL without it."
        )
    in_token = forbidden_words(account.callback_token)
    if in_token:
        return (
            f"Daraja refuses C2B URLs containing {', '.join(repr(w) for w in in_token)} (in any "
            "case), and this account's random callback token happens to contain it. Lipwa does "
            "not change a token by itself (payments in flight use it): add the M-Pesa account "
            "again, which gives it a new token, and register that one."
        )
    return None


async def _mpesa_account(session: AsyncSession, account_id: str) -> ProviderAccount:
    account = await session.get(ProviderAccount, account_id)
    if account is None:
        raise NotFound(account_id)
    if account.provider != "mpesa":
        raise invalid(
            "c2b_needs_mpesa", "C2B is an M-Pesa feature: give an M-Pesa account", "account_id"
        )
    return account


def registration_view(account: ProviderAccount, public_url: str) -> dict[str, Any]:
    urls = c2b_urls(public_url, account)
    registration = account.config.get("c2b_registration") or {}
    return {
        "object": "c2b_registration",
        "account_id": account.id,
        "shortcode": account.config.get("shortcode"),
        "registered": bool(registration),
        "response_type": registration.get("response_type"),
        "registered_at": registration.get("registered_at"),
        "validation_url": urls.validation,
        "confirmation_url": urls.confirmation,
        "rules": parse_rules(account.config.get("c2b")).view(),
    }


class C2bRegistrar:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        registry: ProviderRegistry,
        public_url: str,
    ) -> None:
        self._sessions = sessions
        self._registry = registry
        self._public_url = public_url.rstrip("/")

    async def register(self, account_id: str, response_type: str, actor: str) -> dict[str, Any]:
        if response_type not in RESPONSE_TYPES:
            raise invalid(
                "invalid_response_type",
                "response_type must be exactly 'Completed' or 'Cancelled'",
                "response_type",
            )
        async with self._sessions() as session:
            account = await _mpesa_account(session, account_id)
        problem = url_problem(self._public_url, account)
        if problem:
            raise invalid("c2b_url_refused", problem, "account_id")
        urls = c2b_urls(self._public_url, account)
        answer = await self._registry.mpesa(account).register_c2b_urls(
            response_type=response_type,
            confirmation_url=urls.confirmation,
            validation_url=urls.validation,
        )
        if answer.already_registered:
            raise ApiError(
                409,
                "provider_error",
                "c2b_already_registered",
                f"Safaricom already has C2B URLs for shortcode {account.config.get('shortcode')} "
                "(production registers them once). If they are not this account's Lipwa URLs, "
                "delete them in the Daraja portal (URL management) and register again.",
                extra={"provider_code": answer.code},
            )
        if not answer.ok:
            raise ApiError(
                502,
                "provider_error",
                "c2b_registration_failed",
                f"Daraja refused the C2B URLs: {answer.code or ''} {answer.message or ''}".strip(),
                extra={"provider_code": answer.code},
            )
        async with self._sessions() as session, session.begin():
            account = await _mpesa_account(session, account_id)
            record = {
                "response_type": response_type,
                "registered_at": isoformat(utcnow()),
                "shortcode": account.config.get("shortcode"),
            }
            account.config = {**account.config, "c2b_registration": record}
            account.updated_at = utcnow()
            await audit.record(
                session,
                actor,
                "account.c2b_registered",
                account.id,
                account.merchant_id,
                "",
                record,
            )
            view = registration_view(account, self._public_url)
        view["provider_conversation_id"] = answer.conversation_id
        return view

    async def set_rules(self, account_id: str, raw: dict[str, Any], actor: str) -> dict[str, Any]:
        try:
            rules = parse_rules(raw)
        except DomainError as exc:
            raise invalid(exc.code, exc.message, exc.param) from exc
        async with self._sessions() as session, session.begin():
            account = await _mpesa_account(session, account_id)
            account.config = {**account.config, "c2b": rules.view()}
            account.updated_at = utcnow()
            await audit.record(
                session,
                actor,
                "account.c2b_rules_set",
                account.id,
                account.merchant_id,
                "",
                rules.view(),
            )
            return registration_view(account, self._public_url)

    async def describe(self, account_id: str) -> dict[str, Any]:
        async with self._sessions() as session:
            account = await _mpesa_account(session, account_id)
            return registration_view(account, self._public_url)
