"""The database schema. Every merchant-owned row carries ``merchant_id``; queries filter on it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Money = Numeric(20, 4)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite drops the zone on the way back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Time = UTCDateTime()


class ProviderText(TypeDecorator[str]):
    """A column whose text a provider chooses the length of (a ResultDesc, a receipt, a
    reference): cut to the column's length on the way in. PostgreSQL refuses a longer value,
    and that refusal would stop the write that settles the payment, again at every retry
    (SQLite ignores lengths, so only PostgreSQL showed it)."""

    impl = String
    cache_ok = True

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.max_length = length

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return value[: self.max_length] if isinstance(value, str) else value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        datetime: Time,
        Decimal: Money,
    }


class Merchant(Base):
    __tablename__ = "merchants"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # Per-merchant policy overrides (amount limits per currency, ...), plain JSON.
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]


class ProviderAccount(Base):
    __tablename__ = "provider_accounts"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    provider: Mapped[str] = mapped_column(String(16))  # mpesa | momo
    environment: Mapped[str] = mapped_column(String(16))  # sandbox | production
    label: Mapped[str] = mapped_column(String(200), default="")
    base_url: Mapped[str] = mapped_column(String(500))
    currency: Mapped[str] = mapped_column(String(3))
    # Non-secret settings (shortcode, kind, till number, target environment, ...).
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Secrets sealed by the vault; bound to this row's id.
    secrets_sealed: Mapped[str] = mapped_column(Text)
    key_version: Mapped[str] = mapped_column(String(16))
    # Unguessable path segment of this account's callback URLs.
    callback_token: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | disabled
    setup_status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    mode: Mapped[str] = mapped_column(String(8))  # test | live
    # SHA-256 of the whole key; the key itself is shown once and never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(32))  # "lw_test_…a1b2" for display
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        Index("ix_payments_merchant_created", "merchant_id", "created_at", "id"),
        Index("ix_payments_merchant_reference", "merchant_id", "reference"),
        Index("ix_payments_due", "next_check_at"),
        Index("ix_payments_merchant_phone_created", "merchant_id", "phone", "created_at"),
        Index("ix_payments_account_created", "account_id", "created_at"),
        Index("ix_payments_status_created", "status", "created_at"),
        Index("ix_payments_account_receipt", "account_id", "receipt"),
        UniqueConstraint("account_id", "provider_ref", name="uq_payments_account_provider_ref"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    account_id: Mapped[str] = mapped_column(ForeignKey("provider_accounts.id"), index=True)
    mode: Mapped[str] = mapped_column(String(8))
    provider: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16), default="prompt")  # prompt | c2b
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    # Digits with country code; C2B payers arrive masked ("2547 ***** 126") or hashed.
    phone: Mapped[str] = mapped_column(String(64))
    network: Mapped[str] = mapped_column(String(20))
    reference: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(255), default="")
    # What the provider is shown (Daraja AccountReference / TransactionDesc, MoMo messages).
    provider_reference: Mapped[str] = mapped_column(String(100), default="")
    provider_description: Mapped[str] = mapped_column(String(160), default="")
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    # Write-ahead: our request id is stored before the call (MoMo X-Reference-Id).
    provider_request_id: Mapped[str] = mapped_column(String(64))
    provider_ref: Mapped[str | None] = mapped_column(ProviderText(100))  # CheckoutRequestID, ...
    provider_secondary_ref: Mapped[str | None] = mapped_column(ProviderText(100))
    # not_sent | sent | rejected | ambiguous: what we know of the provider call itself.
    send_state: Mapped[str] = mapped_column(String(16), default="not_sent")
    receipt: Mapped[str | None] = mapped_column(ProviderText(64))
    failure_code: Mapped[str | None] = mapped_column(String(40))
    failure_message: Mapped[str | None] = mapped_column(ProviderText(300))
    provider_code: Mapped[str | None] = mapped_column(ProviderText(40))
    resolved_by: Mapped[str | None] = mapped_column(String(16))  # callback | query | expiry
    next_check_at: Mapped[datetime | None]
    check_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Fees in exact decimals, fixed when the payment succeeds (estimates for provider fees).
    provider_fee: Mapped[Decimal | None]
    platform_fee: Mapped[Decimal | None]
    # The payment link (hosted checkout) this payment came through, if any.
    link_id: Mapped[str | None] = mapped_column(String(40), index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finalized_at: Mapped[datetime | None]


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    method_path: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # in_progress | done
    response_status: Mapped[int | None]
    response_body: Mapped[dict[str, Any] | None]
    # What the request wrote ahead (a payment id): if the process dies before the answer is
    # stored, a retry is shown that resource as it stands instead of waiting for ever.
    resource_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]


class InboundCallback(Base):
    """Every request that reached a callback URL, stored raw before it is answered."""

    __tablename__ = "inbound_callbacks"
    __table_args__ = (Index("ix_inbound_callbacks_kind_processed", "kind", "processed_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str | None] = mapped_column(String(40), index=True)
    payment_id: Mapped[str | None] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(ProviderText(500))
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    body: Mapped[str] = mapped_column(Text)
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime]
    # applied | noop | anomaly | unmatched | forged | invalid
    outcome: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(String(300))
    processed_at: Mapped[datetime | None]
    # An unconfirmed callback (the provider could not confirm it yet) is not swept before this.
    retry_at: Mapped[datetime | None]


class Event(Base):
    """Outbox: written in the same transaction as the state change it reports."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_merchant_created", "merchant_id", "created_at", "id"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    mode: Mapped[str] = mapped_column(String(8))
    type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(40), index=True)
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class Anomaly(Base):
    """A provider report that contradicts a final state; kept for an operator."""

    __tablename__ = "anomalies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    payment_id: Mapped[str] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    detail: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    mode: Mapped[str] = mapped_column(String(8))
    url: Mapped[str] = mapped_column(String(1000))
    # Event types it receives; ["*"] for all.
    event_types: Mapped[list[str]] = mapped_column(JSON)
    # Signing secrets sealed by the vault: {"current": …, "previous": [… during rotation]}.
    secrets_sealed: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="enabled")  # enabled | disabled
    description: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class WebhookDelivery(Base):
    """One event owed to one endpoint; written with the event, retried until delivered."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"), index=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    attempted_at: Mapped[datetime]
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(String(300))
    duration_ms: Mapped[int]


class Flag(Base):
    """Kill switches and rollouts. ``key``: gateway | provider:<p> | merchant:<id> |
    account:<id> | rollout:<provider>."""

    __tablename__ = "flags"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    enabled: Mapped[bool]
    percentage: Mapped[int | None]
    reason: Mapped[str] = mapped_column(String(300), default="")
    updated_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime]


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_action_at", "action", "at"),
        Index("ix_audit_log_target_at", "target", "at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(200))
    merchant_id: Mapped[str | None] = mapped_column(String(40), index=True)
    reason: Mapped[str] = mapped_column(String(300), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class WorkerHeartbeat(Base):
    __tablename__ = "worker_heartbeats"
    worker_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    started_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Payout(Base):
    """Money out to a phone (M-Pesa B2C, MoMo disbursement transfer)."""

    __tablename__ = "payouts"
    __table_args__ = (
        Index("ix_payouts_merchant_created", "merchant_id", "created_at", "id"),
        Index("ix_payouts_due", "next_check_at"),
        UniqueConstraint("account_id", "provider_request_id", name="uq_payouts_account_request"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    account_id: Mapped[str] = mapped_column(ForeignKey("provider_accounts.id"), index=True)
    mode: Mapped[str] = mapped_column(String(8))
    provider: Mapped[str] = mapped_column(String(16))
    # awaiting_approval | pending | unknown | succeeded | failed | cancelled
    status: Mapped[str] = mapped_column(String(20))
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    phone: Mapped[str] = mapped_column(String(20))
    network: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(100), default="")
    reference: Mapped[str] = mapped_column(String(100))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    # OriginatorConversationID (M-Pesa) or X-Reference-Id (MoMo), stored before the call.
    provider_request_id: Mapped[str] = mapped_column(String(64))
    provider_ref: Mapped[str | None] = mapped_column(ProviderText(100))  # ConversationID, ...
    send_state: Mapped[str] = mapped_column(String(16), default="not_sent")
    receipt: Mapped[str | None] = mapped_column(ProviderText(64))
    recipient_name: Mapped[str | None] = mapped_column(ProviderText(200))
    failure_code: Mapped[str | None] = mapped_column(String(40))
    failure_message: Mapped[str | None] = mapped_column(ProviderText(300))
    provider_code: Mapped[str | None] = mapped_column(ProviderText(40))
    resolved_by: Mapped[str | None] = mapped_column(String(16))
    requested_by: Mapped[str] = mapped_column(String(40))  # API key id or "admin"
    approval_required: Mapped[bool] = mapped_column(default=False)
    approved_by: Mapped[str | None] = mapped_column(String(40))
    approved_at: Mapped[datetime | None]
    next_check_at: Mapped[datetime | None]
    check_attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finalized_at: Mapped[datetime | None]


class Refund(Base):
    """Money back for a payment (M-Pesa reversal, MoMo refund); never more than was paid."""

    __tablename__ = "refunds"
    __table_args__ = (
        Index("ix_refunds_due", "next_check_at"),
        UniqueConstraint("account_id", "provider_request_id", name="uq_refunds_account_request"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("provider_accounts.id"))
    mode: Mapped[str] = mapped_column(String(8))
    provider: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # pending | unknown | succeeded | failed
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(100), default="")
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    provider_request_id: Mapped[str] = mapped_column(String(64))
    provider_ref: Mapped[str | None] = mapped_column(ProviderText(100))
    send_state: Mapped[str] = mapped_column(String(16), default="not_sent")
    receipt: Mapped[str | None] = mapped_column(ProviderText(64))
    failure_code: Mapped[str | None] = mapped_column(String(40))
    failure_message: Mapped[str | None] = mapped_column(ProviderText(300))
    provider_code: Mapped[str | None] = mapped_column(ProviderText(40))
    resolved_by: Mapped[str | None] = mapped_column(String(16))
    next_check_at: Mapped[datetime | None]
    check_attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finalized_at: Mapped[datetime | None]


class BalanceSnapshot(Base):
    """A provider balance answer (M-Pesa's arrives asynchronously at the result URL)."""

    __tablename__ = "balance_snapshots"
    __table_args__ = (
        Index("ix_balance_snapshots_account_status", "account_id", "status", "received_at"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("provider_accounts.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))  # requested | received | failed
    provider_ref: Mapped[str | None] = mapped_column(ProviderText(100), index=True)
    balances: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(String(300))
    requested_at: Mapped[datetime]
    received_at: Mapped[datetime | None]


class ReconciliationRun(Base):
    __tablename__ = "reconciliation_runs"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("provider_accounts.id"), index=True)
    statement_date: Mapped[str | None] = mapped_column(String(10))  # YYYY-MM-DD
    source: Mapped[str] = mapped_column(String(300))  # file name or "scheduled"
    status: Mapped[str] = mapped_column(String(16))  # running | done | failed
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class ReconciliationItem(Base):
    __tablename__ = "reconciliation_items"
    __table_args__ = (Index("ix_reconciliation_items_run_kind", "run_id", "kind", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("reconciliation_runs.id"), index=True)
    # matched | unknown_resolved | missing_at_provider | paid_but_failed | amount_mismatch |
    # party_mismatch | missing_in_lipwa | unknown_unpaid_suspected | failed_confirmed |
    # out_of_range | ignored (see lipwa.reconcile)
    kind: Mapped[str] = mapped_column(String(32))
    payment_id: Mapped[str | None] = mapped_column(String(40), index=True)
    receipt: Mapped[str | None] = mapped_column(ProviderText(64))
    amount: Mapped[Decimal | None]
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class PaymentLink(Base):
    """A hosted checkout: a short URL (and QR code) a payer opens to pay."""

    __tablename__ = "payment_links"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    mode: Mapped[str] = mapped_column(String(8))
    slug: Mapped[str] = mapped_column(String(32), unique=True)
    amount: Mapped[Decimal | None]  # None: the payer types the amount
    currency: Mapped[str] = mapped_column(String(3))
    description: Mapped[str] = mapped_column(String(255), default="")
    single_use: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | used | disabled
    expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
