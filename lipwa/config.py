"""Settings, read from the environment (prefix ``LIPWA_``) or a ``.env`` file."""

from __future__ import annotations

from functools import cached_property
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    # Enable the interactive /docs pages.
    docs: bool = True

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError("public_url must be an absolute http(s) URL")
        return value.rstrip("/")

    @cached_property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
