"""Daraja base URLs, and which hosts are Safaricom production (daraja.md §1)."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

SANDBOX_BASE_URL: Final = "https://sandbox.safaricom.co.ke"
PRODUCTION_BASE_URL: Final = "https://api.safaricom.co.ke"

_SAFARICOM_DOMAINS: Final = ("safaricom.co.ke", "safaricom.et")


def host_of(url: str) -> str:
    """The lower-case host of ``url`` (a bare host name is accepted too)."""
    text = url.strip()
    if "://" not in text:
        text = "//" + text
    try:
        host = urlsplit(text).hostname or ""
    except ValueError:
        return ""
    return host.rstrip(".").lower()


def is_production_host(url: str) -> bool:
    """True when ``url`` points at a real Safaricom host other than a sandbox.

    Deliberately broad (any ``*.safaricom.co.ke`` / ``*.safaricom.et`` host whose first label
    does not say "sandbox"): it guards test accounts, so a false "yes" only blocks a
    misconfiguration while a false "no" could let test traffic reach production.
    """
    host = host_of(url)
    if not any(host == d or host.endswith("." + d) for d in _SAFARICOM_DOMAINS):
        return False
    return "sandbox" not in host.split(".", 1)[0]
