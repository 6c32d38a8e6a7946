"""Provider accounts on the right hosts; every sealed secret opens with the current ring."""

from __future__ import annotations

from collections import defaultdict
from urllib.parse import urlsplit

from lipwa.doctor.facts import Facts
from lipwa.doctor.result import Check, failed, passed, warned
from lipwa.providers.momo import hosts as momo_hosts
from lipwa.providers.mpesa import hosts as mpesa_hosts
from lipwa.services.key_rotation import SealedRow, sealed_version
from lipwa.store.tables import ProviderAccount
from lipwa.vault import Vault, VaultError

HOSTS = {"mpesa": mpesa_hosts, "momo": momo_hosts}
KIND_NAMES = {
    "provider_account": "provider account",
    "webhook_endpoint": "webhook endpoint",
    "idempotency_answer": "stored idempotent answer",
}


def hosts(facts: Facts) -> list[Check]:
    if not facts.at_head:
        return []
    found = [c for a in facts.accounts for c in _account_host(a)]
    if found:
        return found
    return [
        passed(
            "accounts.hosts",
            f"{len(facts.active('production'))} production account(s) on production hosts, "
            f"{len(facts.active('sandbox'))} sandbox account(s) off them",
        )
    ]


def _account_host(account: ProviderAccount) -> list[Check]:
    module = HOSTS.get(account.provider)
    if module is None:
        return []
    name = f"account.{account.id}.host"
    who = f"{account.environment} {account.provider} account {account.id} ({account.merchant_id})"
    on_production = module.is_production_host(account.base_url)
    status = failed if account.status == "active" else warned
    if account.environment == "production":
        problems = []
        if not on_production:
            problems.append(f"points at {account.base_url}, not a production host")
        elif urlsplit(account.base_url).scheme != "https":
            problems.append(f"uses {account.base_url} without https")
        if account.provider == "momo" and account.config.get("target_environment") == "sandbox":
            problems.append("has X-Target-Environment 'sandbox'")
        return [
            status(
                name,
                f"{who} {problem}",
                f"Point it at {module.PRODUCTION_BASE_URL} (or your market's production host) "
                "with production credentials, or disable it",
            )
            for problem in problems
        ]
    if on_production:
        return [
            status(
                name,
                f"{who} points at the production host {account.base_url}",
                f"Point it at {module.SANDBOX_BASE_URL} or the simulator, or disable it",
            )
        ]
    return []


def secrets(facts: Facts, vault: Vault | None) -> list[Check]:
    if not facts.at_head:
        return []
    if vault is None:
        return [
            failed(
                "secrets.decrypt",
                f"{len(facts.sealed)} sealed secret(s) not checked: the key ring is unusable",
                "Fix LIPWA_ENCRYPTION_KEYS first (see the keys checks)",
            )
        ]
    found: list[Check] = []
    opened: dict[str, list[SealedRow]] = defaultdict(list)
    for row in facts.sealed:
        try:
            vault.open(row.sealed, bound_to=row.bound_to)
        except VaultError as exc:
            found.append(
                failed(
                    f"secrets.{row.label}",
                    f"{KIND_NAMES[row.kind]} {row.label} does not decrypt: {exc}",
                    "Put the key it was sealed with back into LIPWA_ENCRYPTION_KEYS "
                    "(`lipwa keys status` names it), or enter its secret again",
                )
            )
            continue
        opened[sealed_version(row.sealed) or "?"].append(row)
    found += _versions(facts, vault, opened)
    return found


def _versions(facts: Facts, vault: Vault, opened: dict[str, list[SealedRow]]) -> list[Check]:
    found: list[Check] = []
    accounts = {a.id: a for a in facts.accounts}
    per_version = []
    for version, rows in sorted(opened.items()):
        ids = [r.label for r in rows if r.kind == "provider_account"]
        shown = ", ".join(ids[:10]) + (f" +{len(ids) - 10} more" if len(ids) > 10 else "")
        per_version.append(
            f"{version}: {len(rows)} secret(s)" + (f" (accounts {shown})" if ids else "")
        )
    total = sum(len(rows) for rows in opened.values())
    summary = "; ".join(per_version) if per_version else "no sealed secrets yet"
    found.append(passed("secrets.decrypt", f"{total} secret(s) decrypt with the ring; {summary}"))
    old = {v: rows for v, rows in opened.items() if v != vault.active_version}
    if old:
        count = sum(len(rows) for rows in old.values())
        found.append(
            warned(
                "secrets.key_version",
                f"{count} secret(s) still sealed with {', '.join(sorted(old))}, not the active "
                f"{vault.active_version}",
                "Run `lipwa keys rotate`, then drop the old key when `lipwa keys status` shows 0",
            )
        )
    for row in (r for rows in opened.values() for r in rows if r.kind == "provider_account"):
        account = accounts.get(row.label)
        if account is not None and account.key_version != sealed_version(row.sealed):
            found.append(
                warned(
                    f"secrets.{row.label}.key_version",
                    f"account {row.label} says key_version {account.key_version} but is sealed "
                    f"with {sealed_version(row.sealed)}",
                    "Run `lipwa keys rotate` (it rewrites both)",
                )
            )
    return found
