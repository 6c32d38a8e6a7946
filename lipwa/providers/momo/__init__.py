"""MTN MoMo Open API: the only package that knows MoMo's wire format."""

from lipwa.providers.momo.callbacks import parse_momo_callback
from lipwa.providers.momo.client import MomoClient
from lipwa.providers.momo.credentials import MomoCredentials
from lipwa.providers.momo.hosts import (
    MOMO_AFRICA_BASE_URL,
    PRODUCTION_BASE_URL,
    RWANDA_PRODUCTION_BASE_URL,
    SANDBOX_BASE_URL,
    is_production_host,
    is_sandbox_host,
)

__all__ = [
    "MOMO_AFRICA_BASE_URL",
    "PRODUCTION_BASE_URL",
    "RWANDA_PRODUCTION_BASE_URL",
    "SANDBOX_BASE_URL",
    "MomoClient",
    "MomoCredentials",
    "is_production_host",
    "is_sandbox_host",
    "parse_momo_callback",
]
