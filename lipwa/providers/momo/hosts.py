"""MoMo Open API base URLs, and which hosts are MTN production (momo.md §1.1)."""

from __future__ import annotations

from typing import Final

from lipwa.providers.url_hosts import host_of

SANDBOX_BASE_URL: Final = "https://sandbox.momodeveloper.mtn.com"
PRODUCTION_BASE_URL: Final = "https://proxy.momoapi.mtn.com"  # most markets (legacy gateway)
RWANDA_PRODUCTION_BASE_URL: Final = "https://proxy.momoapi.mtn.co.rw"
MOMO_AFRICA_BASE_URL: Final = "https://momoapi.momo.africa"  # the new platform (migration)

_SANDBOX_HOSTS: Final = frozenset({"sandbox.momodeveloper.mtn.com"})
# Obsolete Azure API Management hosts still hard-coded in old libraries.
_LEGACY_HOSTS: Final = frozenset(
    {"ericssonbasicapi1.azure-api.net", "ericssonbasicapi2.azure-api.net"}
)


def is_sandbox_host(url: str) -> bool:
    """True when ``url`` points at MTN's sandbox (no real money moves there)."""
    return host_of(url) in _SANDBOX_HOSTS


def is_production_host(url: str) -> bool:
    """True when ``url`` points at a real MTN MoMo host other than the sandbox.

    Deliberately broad: any host under an MTN domain (``*.mtn.com``, ``*.mtn.co.rw``,
    ``*.mtn.co.ug``, ``*.mtn.cm``...), any ``*.momo.africa`` host and the old Azure gateway
    hosts, except the sandbox. It guards test accounts, so a false "yes" only blocks a
    misconfiguration.
    """
    host = host_of(url)
    if not host or host in _SANDBOX_HOSTS:
        return False
    return (
        _is_mtn_domain(host)
        or host == "momo.africa"
        or host.endswith(".momo.africa")
        or host in _LEGACY_HOSTS
    )


def _is_mtn_domain(host: str) -> bool:
    """``mtn.<tld>`` or ``mtn.<co|com|...>.<cc>`` and their subdomains (mtn.com, mtn.co.rw)."""
    labels = host.split(".")
    if len(labels) >= 2 and labels[-2] == "mtn":
        return True
    return len(labels) >= 3 and labels[-3] == "mtn" and len(labels[-2]) <= 3
