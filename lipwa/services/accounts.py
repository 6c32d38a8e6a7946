"""Merchants, their provider accounts (credentials sealed by the vault) and API keys."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.clock import isoformat, utcnow
from lipwa.domain.errors import DomainError
from lipwa.domain.ids import new_id
from lipwa.domain.json_object import JsonObject
from lipwa.domain.merchant_settings import check_merchant_settings
from lipwa.domain.money import DEFAULT_RULES
from lipwa.providers.momo import client as momo_client
from lipwa.providers.mpesa import client as mpesa_client
from lipwa.store.tables import ApiKey, Merchant, ProviderAccount
from lipwa.vault import Vault

MASK = "********"

# Which provider account environment an API key mode may use: never crossed.
ENVIRONMENT_FOR_MODE = {"test": "sandbox", "live": "production"}


class NotFound(Exception):
    """The resource does not exist for this merchant (or at all): always a 404."""


# ----- inputs ---------------------------------------------------------------------------------
class MerchantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    settings: JsonObject = Field(default_factory=dict)


class MpesaCredentialsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    consumer_key: SecretStr
    consumer_secret: SecretStr
    shortcode: str = Field(pattern=r"^\d{5,7}$", description="Paybill, or the till's store number")
    kind: Literal["paybill", "till"]
    till_number: str | None = Field(None, pattern=r"^\d{5,8}$")
    passkey: SecretStr
    initiator_name: str | None = Field(None, max_length=64)
    initiator_password: SecretStr | None = None
    certificate_pem: str | None = None
    b2c_shortcode: str | None = Field(None, pattern=r"^\d{5,7}$")


class MomoCredentialsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_user: str = Field(min_length=1, max_length=100)
    api_key: SecretStr
    subscription_keys: dict[Literal["collection", "disbursement", "remittance"], SecretStr]
    target_environment: str = Field(pattern=r"^(sandbox|mtn[a-z]+)$")
    currency: str = Field(pattern=r"^[A-Z]{3}$")

    @field_validator("currency")
    @classmethod
    def _taken_by_momo(cls, value: str) -> str:
        offered = sorted(c for p, c in DEFAULT_RULES if p == "momo")
        if value not in offered:
            raise ValueError(f"MoMo takes {', '.join(offered)}, not {value}")
        return value

    @field_validator("subscription_keys")
    @classmethod
    def _needs_collection(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        if "collection" not in value and "disbursement" not in value:
            raise ValueError("give at least the collection or the disbursement subscription key")
        return value


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: Literal["mpesa", "momo"]
    environment: Literal["sandbox", "production"]
    label: str = Field("", max_length=200)
    base_url: str | None = Field(None, description="Defaults to the provider's real host.")
    credentials: dict[str, Any]


# ----- merchants --------------------------------------------------------------------------------
async def create_merchant(session: AsyncSession, data: MerchantIn) -> Merchant:
    check_merchant_settings(data.settings)
    merchant = Merchant(
        id=new_id("mer"), name=data.name, settings=data.settings, created_at=utcnow()
    )
    session.add(merchant)
    await session.flush()
    return merchant


async def get_merchant(session: AsyncSession, merchant_id: str) -> Merchant:
    merchant = await session.get(Merchant, merchant_id)
    if merchant is None:
        raise NotFound(merchant_id)
    return merchant


async def list_merchants(session: AsyncSession, limit: int = 100) -> list[Merchant]:
    """The newest ``limit`` merchants, newest first."""
    rows = await session.scalars(
        select(Merchant).order_by(Merchant.created_at.desc(), Merchant.id.desc()).limit(limit)
    )
    return list(rows)


def merchant_view(merchant: Merchant) -> dict[str, Any]:
    return {
        "id": merchant.id,
        "object": "merchant",
        "name": merchant.name,
        "settings": merchant.settings,
        "created_at": isoformat(merchant.created_at),
    }


# ----- provider accounts ------------------------------------------------------------------------
def _default_base_url(provider: str, environment: str) -> str:
    module = mpesa_client if provider == "mpesa" else momo_client
    return module.SANDBOX_BASE_URL if environment == "sandbox" else module.PRODUCTION_BASE_URL


def _is_production_host(provider: str, url: str) -> bool:
    module = mpesa_client if provider == "mpesa" else momo_client
    return bool(module.is_production_host(url))


def _is_sandbox_host(provider: str, url: str) -> bool:
    module = mpesa_client if provider == "mpesa" else momo_client
    return bool(module.is_sandbox_host(url))


def _check_base_url(provider: str, environment: str, url: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:  # e.g. "http://[::1" (an unclosed IPv6 address)
        parts = None
    if parts is None or parts.scheme not in {"http", "https"} or not parts.netloc:
        raise DomainError(
            "invalid_base_url", "base_url must be an absolute http(s) URL", "base_url"
        )
    if environment == "sandbox" and _is_production_host(provider, url):
        raise DomainError(
            "sandbox_account_on_production_host",
            "a sandbox account cannot point at a production provider host",
            "base_url",
        )
    if environment == "production" and parts.scheme != "https":
        raise DomainError(
            "production_requires_https", "a production account must use https", "base_url"
        )
    if environment == "production" and _is_sandbox_host(provider, url):
        # Live payments would "succeed" there without any money moving.
        raise DomainError(
            "production_account_on_sandbox_host",
            "a production account cannot point at the provider's sandbox",
            "base_url",
        )
    return url.rstrip("/")


def _split_credentials(
    provider: str, raw: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Validate credentials; return (public config, secrets, currency)."""
    if provider == "mpesa":
        m = MpesaCredentialsIn.model_validate(raw)
        if m.kind == "till" and not m.till_number:
            raise DomainError(
                "till_number_required",
                "a till account needs till_number",
                "credentials.till_number",
            )
        public = {
            "shortcode": m.shortcode,
            "kind": m.kind,
            "till_number": m.till_number,
            "initiator_name": m.initiator_name,
            "b2c_shortcode": m.b2c_shortcode,
            "certificate_pem": m.certificate_pem,
        }
        secret: dict[str, Any] = {
            "consumer_key": m.consumer_key.get_secret_value(),
            "consumer_secret": m.consumer_secret.get_secret_value(),
            "passkey": m.passkey.get_secret_value(),
            "initiator_password": m.initiator_password.get_secret_value()
            if m.initiator_password
            else None,
        }
        return public, secret, "KES"
    mo = MomoCredentialsIn.model_validate(raw)
    if mo.target_environment == "sandbox" and mo.currency != "EUR":
        raise DomainError(
            "invalid_currency",
            "the MoMo sandbox takes EUR only",
            "credentials.currency",
        )
    public = {"api_user": mo.api_user, "target_environment": mo.target_environment}
    momo_secret: dict[str, Any] = {
        "api_key": mo.api_key.get_secret_value(),
        "subscription_keys": {k: v.get_secret_value() for k, v in mo.subscription_keys.items()},
    }
    return public, momo_secret, mo.currency


async def create_account(
    session: AsyncSession, vault: Vault, merchant_id: str, data: AccountIn
) -> ProviderAccount:
    await get_merchant(session, merchant_id)
    url = _check_base_url(
        data.provider,
        data.environment,
        data.base_url or _default_base_url(data.provider, data.environment),
    )
    public, secret, currency = _split_credentials(data.provider, data.credentials)
    if data.environment == "production" and currency == "EUR" and data.provider == "momo":
        raise DomainError("invalid_currency", "EUR is the MoMo sandbox currency", "credentials")
    now = utcnow()
    account_id = new_id("acct")
    account = ProviderAccount(
        id=account_id,
        merchant_id=merchant_id,
        provider=data.provider,
        environment=data.environment,
        label=data.label,
        base_url=url,
        currency=currency,
        config=public,
        secrets_sealed=vault.seal(secret, bound_to=account_id),
        key_version=vault.active_version,
        callback_token=secrets.token_urlsafe(24),
        status="active",
        setup_status="pending",
        created_at=now,
        updated_at=now,
    )
    session.add(account)
    await session.flush()
    return account


async def list_accounts(session: AsyncSession, merchant_id: str) -> list[ProviderAccount]:
    rows = await session.scalars(
        select(ProviderAccount)
        .where(ProviderAccount.merchant_id == merchant_id)
        .order_by(ProviderAccount.created_at)
    )
    return list(rows)


async def set_account_status(
    session: AsyncSession,
    account_id: str,
    status: Literal["active", "disabled"],
    merchant_id: str | None = None,
) -> tuple[ProviderAccount, bool]:
    """Enable or disable an account; (account, whether it changed). A disabled account takes no
    new payment, payout, balance or lookup; its open payments are still settled by callbacks,
    status checks and reconciliation, because money may already have moved. With
    ``merchant_id``, another merchant's account is not found."""
    account = await session.get(ProviderAccount, account_id)
    if account is None or (merchant_id is not None and account.merchant_id != merchant_id):
        raise NotFound(account_id)
    if account.status == status:
        return account, False
    account.status = status
    account.updated_at = utcnow()
    await session.flush()
    return account, True


def callback_base(public_url: str, account: ProviderAccount) -> str:
    # No provider name in the path: Daraja refuses URLs containing words like "mpesa".
    return f"{public_url}/callbacks/{account.callback_token}"


def account_view(account: ProviderAccount, public_url: str) -> dict[str, Any]:
    secret_fields = (
        ["consumer_key", "consumer_secret", "passkey", "initiator_password"]
        if account.provider == "mpesa"
        else ["api_key", "subscription_keys"]
    )
    config = {k: v for k, v in account.config.items() if k != "certificate_pem"}
    return {
        "id": account.id,
        "object": "provider_account",
        "merchant_id": account.merchant_id,
        "provider": account.provider,
        "environment": account.environment,
        "label": account.label,
        "base_url": account.base_url,
        "currency": account.currency,
        "config": config,
        "credentials": dict.fromkeys(secret_fields, MASK),
        "callback_url": callback_base(public_url, account),
        "status": account.status,
        "setup_status": account.setup_status,
        "created_at": isoformat(account.created_at),
    }


# ----- API keys ---------------------------------------------------------------------------------
def hash_api_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class Caller:
    merchant_id: str
    mode: str  # test | live
    key_id: str

    @property
    def environment(self) -> str:
        return ENVIRONMENT_FOR_MODE[self.mode]


async def create_api_key(
    session: AsyncSession, merchant_id: str, mode: Literal["test", "live"]
) -> tuple[ApiKey, str]:
    await get_merchant(session, merchant_id)
    raw = f"lw_{mode}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        id=new_id("key"),
        merchant_id=merchant_id,
        mode=mode,
        key_hash=hash_api_key(raw),
        hint=f"lw_{mode}_…{raw[-4:]}",
        created_at=utcnow(),
        revoked_at=None,
    )
    session.add(key)
    await session.flush()
    return key, raw


async def list_api_keys(session: AsyncSession, merchant_id: str) -> list[ApiKey]:
    """Every key of a merchant, revoked ones included, oldest first."""
    await get_merchant(session, merchant_id)
    rows = await session.scalars(
        select(ApiKey).where(ApiKey.merchant_id == merchant_id).order_by(ApiKey.created_at)
    )
    return list(rows)


async def revoke_api_key(
    session: AsyncSession, key_id: str, merchant_id: str | None = None
) -> tuple[ApiKey, bool]:
    """Revoke a key for good; (key, whether it changed). Revoking twice changes nothing.
    With ``merchant_id``, another merchant's key is not found."""
    key = await session.get(ApiKey, key_id)
    if key is None or (merchant_id is not None and key.merchant_id != merchant_id):
        raise NotFound(key_id)
    if key.revoked_at is not None:
        return key, False
    key.revoked_at = utcnow()
    await session.flush()
    return key, True


def api_key_view(key: ApiKey) -> dict[str, Any]:
    """A key as reads show it: its hint, never the key or its hash."""
    return {
        "id": key.id,
        "object": "api_key",
        "merchant_id": key.merchant_id,
        "mode": key.mode,
        "hint": key.hint,
        "status": "revoked" if key.revoked_at else "active",
        "created_at": isoformat(key.created_at),
        "revoked_at": isoformat(key.revoked_at),
    }


class ApiKeyCache:
    """Known-good API keys for a few seconds, so each request does not look its key up.

    Only hits are kept; a key revoked in the database stops working in every process within
    ``ttl_s``. In memory, per process.
    """

    def __init__(self, ttl_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._known: dict[str, tuple[Caller, float]] = {}

    async def authenticate(self, session_factory: Callable[[], Any], raw: str) -> Caller | None:
        digest = hash_api_key(raw)
        hit = self._known.get(digest)
        now = self._clock()
        if hit is not None and hit[1] > now:
            return hit[0]
        async with session_factory() as session:
            caller = await authenticate(session, raw)
        if caller is None:
            self._known.pop(digest, None)
            return None
        if len(self._known) > 10_000:  # bounded: forget everything rather than grow
            self._known.clear()
        self._known[digest] = (caller, now + self._ttl_s)
        return caller

    def forget(self, key_hash: str) -> None:
        """Drop a key at once (revoked through this process); others drop it within ttl_s."""
        self._known.pop(key_hash, None)


async def authenticate(session: AsyncSession, raw: str) -> Caller | None:
    if not raw.startswith(("lw_test_", "lw_live_")):
        return None
    key = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_api_key(raw)))
    if key is None or key.revoked_at is not None:
        return None
    return Caller(merchant_id=key.merchant_id, mode=key.mode, key_id=key.id)
