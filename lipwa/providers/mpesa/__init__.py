"""M-Pesa (Safaricom Daraja): the only package that knows Daraja's wire format."""

from lipwa.providers.mpesa.callbacks import parse_stk_callback
from lipwa.providers.mpesa.client import MpesaClient
from lipwa.providers.mpesa.credentials import MpesaCredentials
from lipwa.providers.mpesa.hosts import (
    PRODUCTION_BASE_URL,
    SANDBOX_BASE_URL,
    is_production_host,
    is_sandbox_host,
)

__all__ = [
    "PRODUCTION_BASE_URL",
    "SANDBOX_BASE_URL",
    "MpesaClient",
    "MpesaCredentials",
    "is_production_host",
    "is_sandbox_host",
    "parse_stk_callback",
]
