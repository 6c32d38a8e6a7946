"""Payment links: a short URL (and QR code) a payer opens to pay a merchant.

A link belongs to one merchant and one mode (the API key's). Its checkout creates payments
through ``CollectService.create`` like any API call, with a ``Caller`` for the link's merchant
and mode, so every guard (kill switches, rate limits, payer lock, amount limits) applies.
A single-use link becomes ``used`` once a payment through it succeeded (``transitions``
closes it with the success); while one of its payments is still open, another payer cannot
start a second one.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.clock import isoformat, utcnow
from lipwa.domain.errors import DomainError
from lipwa.domain.ids import new_id
from lipwa.domain.money import (
    check_amount,
    format_amount,
    normalise_currency,
    parse_amount,
    rule_for,
)
from lipwa.errors import ApiError, invalid, not_found
from lipwa.services import audit
from lipwa.services.accounts import ENVIRONMENT_FOR_MODE, Caller
from lipwa.services.collect import COUNTRY_FOR_CURRENCY, CollectService, PaymentIn
from lipwa.services.idempotency import Outcome
from lipwa.services.payer_guards import take_turn
from lipwa.services.transitions import OPEN_STATUSES
from lipwa.store.tables import Merchant, Payment, PaymentLink, ProviderAccount

SLUG_BYTES = 6  # token_urlsafe(6): 8 characters, 48 bits
# M-Pesa shows at most 12 characters of the account reference on the payer's prompt.
PROMPT_REFERENCE_MAX = 12
LAST_EXPIRY_YEAR = 2100


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: str | None = Field(
        None, description='Fixed amount, a decimal string ("250"); omit to let the payer type it.'
    )
    currency: str = Field(min_length=3, max_length=3, examples=["KES"])
    description: str = Field("", max_length=255, description="Shown to the payer.")
    expires_at: datetime | None = Field(None, description="After this the link refuses payers.")
    single_use: bool = Field(False, description="Closes after the first successful payment.")


@dataclass(frozen=True)
class LinkState:
    """Whether a payer may pay through a link now; ``reason`` when not."""

    open: bool
    reason: str | None = None  # expired | used | disabled | busy


def link_caller(link: PaymentLink) -> Caller:
    """The merchant and mode a link's payments are made for (never another merchant's)."""
    return Caller(merchant_id=link.merchant_id, mode=link.mode, key_id=f"link:{link.id}")


def link_url(public_url: str, link: PaymentLink) -> str:
    return f"{public_url}/l/{link.slug}"


def link_view(link: PaymentLink, public_url: str) -> dict[str, Any]:
    url = link_url(public_url, link)
    return {
        "id": link.id,
        "object": "payment_link",
        "url": url,
        "slug": link.slug,
        "qr_png_url": f"{url}/qr.png",
        "qr_svg_url": f"{url}/qr.svg",
        "amount": format_amount(link.amount, link.currency) if link.amount is not None else None,
        "currency": link.currency,
        "description": link.description,
        "single_use": link.single_use,
        "status": link.status,
        "expires_at": isoformat(link.expires_at),
        "mode": link.mode,
        "livemode": link.mode == "live",
        "created_at": isoformat(link.created_at),
    }


async def create_link(session: AsyncSession, caller: Caller, data: LinkIn) -> PaymentLink:
    """Validate and store a link (in the caller's transaction)."""
    try:
        currency = normalise_currency(data.currency)
        amount = parse_amount(data.amount, currency) if data.amount is not None else None
    except DomainError as exc:
        raise invalid(exc.code, exc.message, exc.param) from exc
    now = utcnow()
    if data.expires_at is not None:
        if data.expires_at.tzinfo is None:
            raise invalid("naive_datetime", "expires_at needs a time zone (e.g. Z)", "expires_at")
        if data.expires_at.year > LAST_EXPIRY_YEAR:  # checked before any zone arithmetic
            raise invalid(
                "invalid_expires_at",
                f"expires_at must be in {LAST_EXPIRY_YEAR} at the latest",
                "expires_at",
            )
        if data.expires_at <= now:
            raise invalid("expires_in_past", "expires_at must be in the future", "expires_at")
    environment = ENVIRONMENT_FOR_MODE[caller.mode]
    provider = await session.scalar(
        select(ProviderAccount.provider)
        .where(
            ProviderAccount.merchant_id == caller.merchant_id,
            ProviderAccount.environment == environment,
            ProviderAccount.currency == currency,
            ProviderAccount.status == "active",
        )
        .order_by(ProviderAccount.created_at, ProviderAccount.id)
        .limit(1)
    )
    if provider is None:
        raise invalid(
            "currency_not_supported",
            f"This merchant has no active {environment} provider account taking {currency}; "
            "add one before creating links in it",
            "currency",
        )
    if amount is not None:  # a fixed amount no payer could pay is refused now, not at checkout
        merchant = await session.get(Merchant, caller.merchant_id)
        limits = merchant.settings.get("limits") if merchant is not None else None
        try:
            check_amount(amount, rule_for(provider, currency, limits), currency)
        except DomainError as exc:
            raise invalid(exc.code, exc.message, "amount") from exc
    slug = secrets.token_urlsafe(SLUG_BYTES)
    while await session.scalar(select(PaymentLink.id).where(PaymentLink.slug == slug)):
        slug = secrets.token_urlsafe(SLUG_BYTES)  # 48 bits: a collision is a curiosity
    link = PaymentLink(
        id=new_id("plink"),
        merchant_id=caller.merchant_id,
        mode=caller.mode,
        slug=slug,
        amount=amount,
        currency=currency,
        description=data.description,
        single_use=data.single_use,
        status="active",
        expires_at=data.expires_at,
        created_at=now,
    )
    session.add(link)
    await session.flush()
    return link


async def get_link(session: AsyncSession, caller: Caller, link_id: str) -> PaymentLink:
    link = await session.get(PaymentLink, link_id)
    if link is None or link.merchant_id != caller.merchant_id or link.mode != caller.mode:
        raise not_found("payment link", link_id)
    return link


async def link_by_slug(session: AsyncSession, slug: str) -> PaymentLink | None:
    if not slug or len(slug) > 32:
        return None
    return await session.scalar(
        select(PaymentLink)
        .where(PaymentLink.slug == slug)
        .execution_options(populate_existing=True)
    )


async def set_link_status(
    session: AsyncSession, caller: Caller, link_id: str, status: str
) -> PaymentLink:
    link = await get_link(session, caller, link_id)
    if link.status != status:
        link.status = status
        await session.flush()
        action = "payment_link.disabled" if status == "disabled" else "payment_link.enabled"
        await audit.record(session, caller.key_id, action, link.id, caller.merchant_id)
    return link


async def link_state(
    session: AsyncSession, link: PaymentLink, now: datetime | None = None
) -> LinkState:
    """Whether a new payment may start through ``link``."""
    now = now or utcnow()
    if link.status == "disabled":
        return LinkState(False, "disabled")
    if link.status == "used":
        return LinkState(False, "used")
    if link.expires_at is not None and link.expires_at <= now:
        return LinkState(False, "expired")
    if link.single_use:
        statuses = set(
            await session.scalars(
                select(Payment.status).where(
                    Payment.link_id == link.id, Payment.merchant_id == link.merchant_id
                )
            )
        )
        if "succeeded" in statuses:
            return LinkState(False, "used")
        if statuses & set(OPEN_STATUSES):
            return LinkState(False, "busy")
    return LinkState(True)


async def merchant_name(session: AsyncSession, merchant_id: str) -> str:
    merchant = await session.get(Merchant, merchant_id)
    return merchant.name if merchant is not None else ""


@dataclass(frozen=True)
class CheckoutRequest:
    phone: str
    amount: Decimal  # already parsed in the link's currency
    attempt: str  # the form's one-time nonce: the same submission never charges twice


def checkout_payment(link: PaymentLink, request: CheckoutRequest) -> PaymentIn:
    return PaymentIn(
        amount=format_amount(request.amount, link.currency),
        currency=link.currency,
        phone=request.phone,
        reference=link.id,
        account_reference=link.slug[:PROMPT_REFERENCE_MAX],
        description=link.description,
        country=COUNTRY_FOR_CURRENCY.get(link.currency),
        metadata={"source": "payment_link", "link_id": link.id},
    )


def payer_amount(link: PaymentLink, typed: str | None) -> Decimal:
    """The link's fixed amount, or the one the payer typed (validated for the currency)."""
    if link.amount is not None:
        return link.amount
    try:
        return parse_amount((typed or "").strip(), link.currency)
    except DomainError as exc:
        raise invalid(exc.code, exc.message, "amount") from exc


async def start_checkout(
    collect: CollectService,
    link: PaymentLink,
    request: CheckoutRequest,
) -> Outcome:
    """Create the payment through the collections service, tied to its link from the
    write-ahead on: a callback that settles it before the provider call returns already finds
    the link (and closes a single-use one)."""
    key = f"link:{link.id}:{request.attempt}"
    caller = link_caller(link)

    async def still_open(session: AsyncSession) -> None:
        # Checkouts of one single-use link take turns: the second sees the first's payment.
        if link.single_use:
            await take_turn(session, "link", caller, link.id)
        state = await link_state(session, link)
        if not state.open:
            raise ApiError(
                409,
                "invalid_request_error",
                f"link_{state.reason}",
                f"This payment link cannot take a payment now ({state.reason})",
            )

    return await collect.create(
        caller, checkout_payment(link, request), key, link_id=link.id, also_check=still_open
    )
