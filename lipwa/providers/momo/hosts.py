"""MoMo Open API base URLs, and which hosts are MTN production (momo.md §1.1)."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

SANDBOX_BASE_URL: Final = "https://sandbox.momodeveloper.mtn.com"
PRODUCTION_BASE_URL: Final = "https://proxy.momoapi.mtn.com"  # most markets (legacy gateway)
RWANDA_PRODUCTION_BASE_URL: Final = "https://proxy.momoapi.mtn.co.rw"
MOMO_AFRICA_BASE_URL: Final = "https://momoapi.momo.africa"  # the new platform (migration)

_SANDBOX_HOSTS: Final = frozenset({"sandbox.momodeveloper.mtn.com"})
# Obsolete Azure API Management hosts still hard-coded in old libraries.
_LEGACY_HOSTS: Final = frozenset(
    {"ericssonbasicapi1.azure-api.net", "ericssonbasicapi2.azure-api.net"}
)


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
    """True when ``url`` points at a real MTN MoMo host other than the sandbox.

    Deliberately broad: any host with an ``mtn`` label (``*.mtn.com``, ``*.mtn.co.rw``,
    ``*.mtn.co.ug``...), any ``*.momo.africa`` host and the old Azure gateway hosts, except
    the sandbox. It guards test accounts, so a false "yes" only blocks a misconfiguration.
    """
    host = host_of(url)
    if not host or host in _SANDBOX_HOSTS:
        return False
    labels = host.split(".")
    return (
        "mtn" in labels[:-1]
        or host == "momo.africa"
        or host.endswith(".momo.africa")
        or host in _LEGACY_HOSTS
    )
