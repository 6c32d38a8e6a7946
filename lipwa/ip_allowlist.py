"""IP allow-lists: parse ``"196.201.214.200, 196.201.212.0/24"`` and test an address."""

from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_sources(text: str) -> tuple[Network, ...]:
    """``"196.201.214.200, 196.201.212.0/24"`` → networks; ValueError names a bad entry."""
    networks: list[Network] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an IP address or CIDR block (e.g. 196.201.214.200 or "
                "196.201.212.0/24)"
            ) from None
    return tuple(networks)


def source_allowed(host: str | None, allowed: tuple[Network, ...]) -> bool:
    if not allowed:
        return True
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False  # no client address (a unix socket without a proxy header)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in allowed)
