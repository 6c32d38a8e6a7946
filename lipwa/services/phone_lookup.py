"""What Lipwa would do with a phone number: its network, provider and the caller's accounts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.domain.errors import DomainError
from lipwa.domain.phones import SANDBOX_COUNTRY, Network, normalise_phone, provider_for_network
from lipwa.errors import invalid
from lipwa.services.accounts import Caller
from lipwa.services.collect import COUNTRY_FOR_CURRENCY
from lipwa.store.tables import ProviderAccount

# The currency an account must take to charge a number of this country (MoMo's sandbox: EUR).
CURRENCY_FOR_COUNTRY = {
    **{country: currency for currency, country in COUNTRY_FOR_CURRENCY.items()},
    SANDBOX_COUNTRY: "EUR",
}


class PhoneLookupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phone: Any = Field(description="A number in any common form.", examples=["0708374149"])
    country: str | None = Field(
        None, min_length=2, max_length=2, description="Country for local numbers (07…)."
    )
    check_account_holder: bool = Field(
        True,
        description="MoMo numbers: ask MoMo whether the wallet is active and whose it is "
        "(`account_holder`; at most a few seconds).",
    )


async def lookup_phone(
    session: AsyncSession,
    caller: Caller,
    data: PhoneLookupIn,
    prefix_overrides: Mapping[str, Network] | None = None,
) -> dict[str, Any]:
    try:
        phone = normalise_phone(data.phone, data.country, prefix_overrides)
    except DomainError as exc:
        raise invalid(exc.code, exc.message, exc.param or "phone") from exc
    provider = provider_for_network(phone.network)
    accounts: list[str] = []
    if provider is not None:
        rows = await session.scalars(
            select(ProviderAccount.id)
            .where(
                ProviderAccount.merchant_id == caller.merchant_id,
                ProviderAccount.provider == provider,
                ProviderAccount.environment == caller.environment,
                ProviderAccount.status == "active",
                # Its market's account only: a MoMo Uganda account cannot charge, nor ask
                # about, a Rwandan wallet. (MTN's sandbox takes EUR for any number.)
                or_(
                    ProviderAccount.currency == CURRENCY_FOR_COUNTRY.get(phone.country, ""),
                    and_(
                        ProviderAccount.environment == "sandbox",
                        ProviderAccount.currency == "EUR",
                    ),
                ),
            )
            .order_by(ProviderAccount.created_at)
        )
        accounts = list(rows)
    return {
        "object": "phone_lookup",
        "e164": phone.e164,
        "msisdn": phone.msisdn,
        "country": phone.country,
        "network": phone.network.value,
        "provider": provider,
        "accounts": accounts,
        "supported": bool(accounts),
    }
