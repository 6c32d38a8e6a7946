"""Settings that decide whether production traffic is safe: public URL, TLS, mode, metrics."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from lipwa.config import Settings
from lipwa.doctor.facts import Facts
from lipwa.doctor.result import Check, failed, passed, warned


def is_live(settings: Settings, facts: Facts) -> bool:
    """Production intent: live data in the database, or LIPWA_MODE=production."""
    return facts.has_live_data or settings.mode == "production"


def _is_private_host(host: str) -> bool:
    if host in {"localhost", ""} or host.endswith((".local", ".localhost", ".internal")):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_private or ip.is_loopback or ip.is_link_local


def public_url(settings: Settings, live: bool) -> list[Check]:
    name = "config.public_url"
    url = settings.public_url
    parts = urlsplit(url)
    if not live:
        return [passed(name, f"{url} (sandbox only: http is acceptable)")]
    found: list[Check] = []
    if parts.scheme != "https":
        found.append(
            failed(
                name,
                f"LIPWA_PUBLIC_URL is {url}: production callbacks need https",
                "Serve Lipwa behind TLS with a certificate from a public CA and set "
                "LIPWA_PUBLIC_URL=https://<your host>",
            )
        )
    if _is_private_host(parts.hostname or ""):
        found.append(
            failed(
                f"{name}.host",
                f"LIPWA_PUBLIC_URL host {parts.hostname} is not reachable from the providers",
                "Use the public DNS name that Safaricom and MTN can reach (and register it with "
                "MTN as the API user's callback host)",
            )
        )
    return found or [passed(name, f"{url} (https, public host)")]


def tls(settings: Settings, live: bool) -> Check:
    name = "config.verify_tls"
    if settings.verify_tls:
        return passed(name, "TLS certificates of providers and webhook endpoints are verified")
    fix = "Remove LIPWA_VERIFY_TLS=false (install the CA bundle instead if a proxy needs one)"
    detail = "LIPWA_VERIFY_TLS=false: provider and webhook calls accept any certificate"
    return failed(name, detail, fix) if live else warned(name, detail, fix)


def mode(settings: Settings, facts: Facts) -> list[Check]:
    name = "config.mode"
    if facts.error or not facts.at_head:
        return []
    if settings.mode == "sandbox" and facts.has_live_data:
        return [
            failed(
                name,
                "LIPWA_MODE=sandbox but the database has live API keys or production accounts",
                "Set LIPWA_MODE=production (or revoke/disable the live keys and accounts)",
            )
        ]
    if settings.mode == "production" and facts.has_test_data:
        return [
            failed(
                name,
                "LIPWA_MODE=production but the database has test API keys or sandbox accounts",
                "Revoke the test keys and disable the sandbox accounts: staging belongs on its "
                "own gateway, database and keys",
            )
        ]
    if facts.has_live_data and facts.has_test_data:
        return [
            warned(
                name,
                "One database and one key ring hold both sandbox and production credentials",
                "Run staging as its own gateway (own database, own LIPWA_ENCRYPTION_KEYS, "
                "LIPWA_MODE=sandbox) and set LIPWA_MODE=production here",
            )
        ]
    if facts.has_live_data and settings.mode == "mixed":
        return [
            warned(
                name,
                "LIPWA_MODE=mixed on a production gateway: test keys would be accepted",
                "Set LIPWA_MODE=production",
            )
        ]
    return [passed(name, f"LIPWA_MODE={settings.mode} matches the keys and accounts")]


def metrics_token(settings: Settings, live: bool) -> Check:
    name = "config.metrics_token"
    if settings.metrics_token is not None:
        return passed(name, "GET /metrics requires LIPWA_METRICS_TOKEN")
    detail = "GET /metrics is open to anyone who reaches the API (volumes, error rates; no PII)"
    fix = (
        "Set LIPWA_METRICS_TOKEN (Prometheus: authorization.credentials) or block /metrics "
        "at the proxy"
    )
    return warned(name, detail, fix) if live else passed(name, detail)


def callback_sources(settings: Settings, live: bool) -> Check:
    name = "config.callback_sources"
    count = len(settings.callback_networks)
    if count:
        return passed(name, f"provider callbacks are taken from {count} listed source(s) only")
    detail = "provider callbacks are taken from any address (the URL token alone decides)"
    fix = (
        "Set LIPWA_CALLBACK_SOURCES to Safaricom's published callback addresses and MTN's, or "
        "allow only those to /callbacks/ at the proxy"
    )
    return warned(name, detail, fix) if live else passed(name, detail)
