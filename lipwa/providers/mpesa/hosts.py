"""Daraja base URLs, and which hosts are Safaricom production (daraja.md §1)."""

from __future__ import annotations

from typing import Final

from lipwa.providers.url_hosts import host_of

SANDBOX_BASE_URL: Final = "https://sandbox.safaricom.co.ke"
PRODUCTION_BASE_URL: Final = "https://api.safaricom.co.ke"

_SAFARICOM_DOMAINS: Final = ("safaricom.co.ke", "safaricom.et")


def _safaricom(host: str) -> bool:
    return any(host == d or host.endswith("." + d) for d in _SAFARICOM_DOMAINS)


def is_sandbox_host(url: str) -> bool:
    """True when ``url`` points at a Safaricom sandbox (no real money moves there)."""
    host = host_of(url)
    return _safaricom(host) and "sandbox" in host.split(".", 1)[0]


def is_production_host(url: str) -> bool:
    """True when ``url`` points at a real Safaricom host other than a sandbox.

    Deliberately broad (any ``*.safaricom.co.ke`` / ``*.safaricom.et`` host whose first label
    does not say "sandbox"): it guards test accounts, so a false "yes" only blocks a
    misconfiguration while a false "no" could let test traffic reach production.
    """
    host = host_of(url)
    return _safaricom(host) and "sandbox" not in host.split(".", 1)[0]
