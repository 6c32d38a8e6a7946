"""``--online``: a token per account, the public URL from outside, webhook endpoints answering.

Every call happens after the database session is closed; accounts are detached rows.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx

from lipwa.config import Settings
from lipwa.doctor.facts import Facts
from lipwa.doctor.result import Check, failed, passed, warned
from lipwa.providers.tokens import TokenCache
from lipwa.services.providers import ProviderRegistry
from lipwa.store.tables import ProviderAccount, WebhookEndpoint
from lipwa.vault import Vault, VaultError

PARALLEL = 5
PING_TIMEOUT_S = 5.0


async def run(settings: Settings, facts: Facts, vault: Vault | None) -> list[Check]:
    async with httpx.AsyncClient(
        verify=settings.verify_tls,
        timeout=httpx.Timeout(
            settings.provider_read_timeout_s, connect=settings.provider_connect_timeout_s
        ),
        headers={"User-Agent": "lipwa-doctor/0.1"},
    ) as http:
        found = [await public_url(settings, http)]
        if vault is not None and facts.at_head:
            found += await tokens(settings, facts, vault, http)
        if facts.at_head:
            found += await webhook_endpoints(facts, http)
    return found


async def public_url(settings: Settings, http: httpx.AsyncClient) -> Check:
    name = "online.public_url"
    url = f"{settings.public_url}/health/live"
    try:
        response = await http.get(url, timeout=PING_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return failed(
            name,
            f"GET {url} failed ({type(exc).__name__}): providers cannot call back",
            "Check DNS, the TLS certificate and the reverse proxy in front of Lipwa",
        )
    if response.status_code != 200:
        return failed(
            name,
            f"GET {url} answered HTTP {response.status_code}",
            "Route LIPWA_PUBLIC_URL to `lipwa serve` (the proxy must pass /callbacks and /health)",
        )
    return passed(name, f"GET {url} answers 200")


async def tokens(
    settings: Settings, facts: Facts, vault: Vault, http: httpx.AsyncClient
) -> list[Check]:
    registry = ProviderRegistry(
        vault,
        http,
        TokenCache(),
        connect_timeout_s=settings.provider_connect_timeout_s,
        read_timeout_s=settings.provider_read_timeout_s,
    )
    gate = asyncio.Semaphore(PARALLEL)

    async def one(account: ProviderAccount) -> Check | None:
        async with gate:
            return await _token(registry, account)

    accounts = [a for a in facts.accounts if a.status == "active"]
    results = await asyncio.gather(*(one(a) for a in accounts))
    return [r for r in results if r is not None]


async def _token(registry: ProviderRegistry, account: ProviderAccount) -> Check | None:
    name = f"online.{account.id}.token"
    who = f"{account.environment} {account.provider} account {account.id} ({account.merchant_id})"
    try:
        client = registry.mpesa(account) if account.provider == "mpesa" else registry.momo(account)
    except VaultError:
        return None  # reported by secrets.decrypt
    except KeyError as exc:
        return failed(name, f"{who} lacks setting {exc}", "Enter the account's credentials again")
    failure = await client.check_credentials()
    if failure is None:
        return passed(name, f"{who}: the provider issued a token")
    status = f"HTTP {failure.http_status}" if failure.http_status else failure.error_code
    return failed(
        name,
        f"{who}: no token ({status}: {failure.error_message})",
        "Check the account's credentials with the provider (production ones come after "
        "go-live approval) and that this host's IP is allow-listed",
    )


async def webhook_endpoints(facts: Facts, http: httpx.AsyncClient) -> list[Check]:
    enabled = [e for e in facts.endpoints if e.status == "enabled"]
    results = await asyncio.gather(*(_answers(http, e) for e in enabled))
    problems = [c for c in results if c is not None]
    return problems or [
        passed("online.webhooks", f"{len(enabled)} enabled webhook endpoint(s) answer")
    ]


async def _answers(http: httpx.AsyncClient, endpoint: WebhookEndpoint) -> Check | None:
    # HEAD: any HTTP answer (even 405) proves the host is there; no event is sent. The URL is
    # never printed in full: merchants sometimes put tokens in it.
    host = urlsplit(endpoint.url).hostname
    try:
        await http.head(endpoint.url, timeout=PING_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return warned(
            f"online.webhook.{endpoint.id}",
            f"webhook endpoint {endpoint.id} ({endpoint.merchant_id}, host {host}) does not "
            f"answer ({type(exc).__name__})",
            "Tell the merchant: deliveries to it are retried, then given up",
        )
    return None
