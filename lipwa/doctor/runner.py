"""Run every check against one configuration and its database."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from lipwa.config import Settings
from lipwa.doctor import (
    account_checks,
    config_checks,
    database_checks,
    key_checks,
    online_checks,
    service_checks,
)
from lipwa.doctor.facts import load_facts
from lipwa.doctor.result import Check
from lipwa.vault import KeyRing, Vault, VaultError

DEFAULT_ALERT_RULES = Path("deploy/prometheus/lipwa-alerts.yml")


def _vault(settings: Settings) -> Vault | None:
    """The ring's usable keys (broken entries are reported by the keys checks), so every
    secret can still be tried."""
    if settings.encryption_keys is None:
        return None
    usable = []
    for item in settings.encryption_keys.get_secret_value().split(","):
        try:
            usable.append(KeyRing.parse(item))
        except VaultError:
            continue
    if not usable:
        return None
    keys = {k: v for ring in usable for k, v in ring.keys.items()}
    return Vault(KeyRing(active_version=usable[0].active_version, keys=keys))


async def run_doctor(
    settings: Settings,
    *,
    online: bool = False,
    processes: int = 1,
    alert_rules: Path = DEFAULT_ALERT_RULES,
) -> list[Check]:
    facts = await load_facts(settings.database_url)
    live = config_checks.is_live(settings, facts)
    vault = _vault(settings)
    key_found, keys = key_checks.ring(settings, live)
    checks: list[Check] = [
        *config_checks.public_url(settings, live),
        config_checks.tls(settings, live),
        *config_checks.mode(settings, facts),
        *key_found,
        *key_checks.age(keys, datetime.now(UTC).date()),
        *database_checks.reachable(facts),
        database_checks.engine(facts, live),
        *database_checks.migrations(facts),
        *database_checks.clock(facts),
        *account_checks.hosts(facts),
        *account_checks.secrets(facts, vault),
        await service_checks.redis(settings, facts, processes),
        *database_checks.heartbeat(facts),
        config_checks.metrics_token(settings, live),
        config_checks.callback_sources(settings, live),
        service_checks.alert_rules(alert_rules),
    ]
    if online:
        checks += await online_checks.run(settings, facts, vault)
    return checks
