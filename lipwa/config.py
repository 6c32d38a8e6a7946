"""Settings, read from the environment (prefix ``LIPWA_``) or a ``.env`` file."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from lipwa.domain.phones import Network
    from lipwa.ip_allowlist import Network as IpNetwork


ADMIN_TOKEN_MIN = 16  # it opens every merchant's keys and accounts: no guessable token


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIPWA_", env_file=".env", extra="ignore")

    database_url: str = Field(
        "sqlite+aiosqlite:///./lipwa.db",
        description="SQLAlchemy URL: sqlite+aiosqlite:///path or postgresql+asyncpg://…",
    )
    public_url: str = Field(
        "http://localhost:8000", description="Base URL providers use to call Lipwa back."
    )
    admin_token: SecretStr | None = Field(None, description="Bearer token for /admin/v1.")
    encryption_keys: SecretStr | None = Field(
        None, description="Key ring 'v2:<base64 32 bytes>,v1:<…>'; the first key encrypts."
    )
    redis_url: str | None = None
    # PostgreSQL connections per process: at most pool + overflow. Keep the sum over every
    # API and worker process under the server's max_connections (100 by default).
    db_pool_size: int = Field(10, ge=1)
    db_max_overflow: int = Field(5, ge=0)
    # Processes: "api", "worker" or "all" (API and worker in one process: the embedded default).
    role: str = "all"
    log_level: str = "INFO"
    log_json: bool = True
    # Provider HTTP behaviour
    provider_connect_timeout_s: float = 5.0
    provider_read_timeout_s: float = 30.0
    verify_tls: bool = True
    # How long an idempotent request waits for a concurrent twin before answering 409.
    idempotency_wait_s: float = 15.0
    # Recovery: first status check after this many seconds without a callback.
    first_check_after_s: float = 20.0
    # Recovery (lipwa.services.recovery_rules documents the schedule): back-off between status
    # checks (initial * 2^n, capped), the hard horizon after which an open payment is expired
    # or handed to reconciliation, how old a never-sent write-ahead must be before the worker
    # treats its process as dead (must exceed the longest send), the claim lease, batch size
    # and parallel checks per worker, and MoMo's status GET rate per account (MTN caps it at 10/s).
    check_backoff_initial_s: float = 15.0
    check_backoff_max_s: float = 600.0
    check_horizon_s: float = 24 * 3600.0
    stale_send_after_s: float = 60.0
    # MoMo's payer approval window: no re-send after it, and a request MoMo has still not heard
    # of once it (and stale_send_after_s) is over never will be: an ambiguous send whose lookup
    # then says 404 fails as expired.
    momo_approval_window_s: float = 300.0
    check_lease_s: float = 120.0
    recovery_batch: int = 50
    recovery_concurrency: int = 10
    momo_status_per_second: int = 10
    # The events cursor stays behind events younger than this (lipwa.services.events).
    events_settle_s: float = Field(5.0, ge=0)
    # Circuit breaker per provider account (in memory, per process).
    circuit_failures: int = 5
    circuit_cooldown_s: float = 30.0
    # Run the worker inside the API process (`lipwa serve`); None: only when role is "all".
    run_worker: bool | None = None
    # Comma-separated names of the worker jobs to run (e.g. "payment_checks,callback_sweep");
    # None runs them all.
    worker_jobs: str | None = None
    # ``lipwa worker`` serves its own /metrics here when set (it counts webhook deliveries,
    # payments settled by status checks, provider calls of recovery: nothing else exports them).
    worker_metrics_port: int | None = Field(None, ge=1, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    # Webhooks out: per-attempt timeout, parallel sends, retry back-off (base * 2^n with full
    # jitter, capped) and how long after the event a delivery is given up.
    webhook_timeout_s: float = 10.0
    webhook_concurrency: int = 20
    webhook_retry_base_s: float = 10.0
    webhook_retry_cap_s: float = 6 * 3600.0
    webhook_give_up_after_s: float = 3 * 24 * 3600.0
    # Guards and switches (docs/guards.md). Which provider environments this gateway serves:
    # "sandbox" (test keys only), "production" (live keys only) or "mixed"; checked at start-up.
    mode: Literal["sandbox", "production", "mixed"] = "mixed"
    # Every process re-reads the kill switches and rollouts at most this many seconds late.
    flags_refresh_s: float = 2.0
    # Operator's phone-prefix corrections: "25411=safaricom,25673=airtel_ug".
    phone_prefixes: str = ""
    # Rate limits (moving window; shared through Redis when redis_url is set). Merchants
    # override prompts / payer_lock_s / same_amount_s / duplicate_window_s in their settings.
    rate_limit_prompts: str = "10/5minutes"  # STK prompts / requests-to-pay per merchant
    rate_limit_api_key: str = "20/second"  # every merchant API request, per API key
    payer_lock_s: float = 120.0  # one open prompt per payer phone (0: off)
    same_amount_window_s: float = 120.0  # M-Pesa: same phone and amount refused within (0: off)
    duplicate_window_s: float = 600.0  # same phone, amount and reference (0: off)
    redis_key_prefix: str = "lipwa"
    # Daily reconciliation drop folder: <dir>/<account_id>/<YYYY-MM-DD>.csv (docs/reconciliation.md)
    statements_dir: str | None = None
    # Provider callbacks only from these addresses: comma-separated IPs or CIDR blocks (the
    # providers' published lists); blank takes them from anywhere (lipwa.api.callback_sources).
    callback_sources: str = ""
    # Enable the interactive /docs pages.
    docs: bool = True
    # GET /metrics (Prometheus text): open when unset (it holds no secrets or phone numbers);
    # when set, scrapers must send "Authorization: Bearer <token>" (README.md, "Going live").
    metrics_token: SecretStr | None = None

    @field_validator("worker_jobs", mode="before")
    @classmethod
    def _blank_is_every_job(cls, value: object) -> object:
        """``LIPWA_WORKER_JOBS=`` is unset (every job), not a worker that beats a healthy
        heartbeat while running nothing."""
        if isinstance(value, str) and not value.replace(",", "").strip():
            return None
        return value

    @field_validator("admin_token", "metrics_token", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """``LIPWA_ADMIN_TOKEN=`` (an empty line in .env, an unset compose variable) is no
        token at all: the admin API stays off rather than open to an empty bearer."""
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(raw, str) and not raw.strip():
            return None
        return value

    @field_validator("admin_token")
    @classmethod
    def _strong_admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < ADMIN_TOKEN_MIN:
            raise ValueError(
                f"LIPWA_ADMIN_TOKEN must be at least {ADMIN_TOKEN_MIN} characters: generate one "
                "with python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError("public_url must be an absolute http(s) URL")
        return value.rstrip("/")

    @property
    def embeds_worker(self) -> bool:
        """Whether the API process also runs the worker loops."""
        return self.role == "all" if self.run_worker is None else self.run_worker

    @field_validator("rate_limit_prompts", "rate_limit_api_key")
    @classmethod
    def _one_rate(cls, value: str) -> str:
        from limits import parse_many

        if len(parse_many(value)) != 1:
            raise ValueError("give one rate such as '10/5minutes'")
        return value

    @field_validator("phone_prefixes")
    @classmethod
    def _prefixes(cls, value: str) -> str:
        from lipwa.domain.phone_prefixes import parse_prefix_overrides

        parse_prefix_overrides(value)
        return value

    @field_validator("callback_sources")
    @classmethod
    def _sources(cls, value: str) -> str:
        from lipwa.ip_allowlist import parse_sources

        parse_sources(value)
        return value

    @cached_property
    def callback_networks(self) -> tuple[IpNetwork, ...]:
        from lipwa.ip_allowlist import parse_sources

        return parse_sources(self.callback_sources)

    @cached_property
    def prefix_overrides(self) -> dict[str, Network]:
        from lipwa.domain.phone_prefixes import parse_prefix_overrides

        return parse_prefix_overrides(self.phone_prefixes)

    @cached_property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
