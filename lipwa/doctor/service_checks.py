"""Services beside the gateway: Redis for shared counters, the Prometheus alert rules."""

from __future__ import annotations

from pathlib import Path

from lipwa.config import Settings
from lipwa.doctor.facts import Facts
from lipwa.doctor.result import Check, failed, passed, warned
from lipwa.services.readiness import ping_redis

# The alerts deploy/prometheus/lipwa-alerts.yml defines; a rules file without them is stale.
EXPECTED_ALERTS = frozenset(
    {
        "LipwaPaymentSuccessRateLow",
        "LipwaCallbackProcessingSlow",
        "LipwaApiErrorRateHigh",
        "LipwaProviderCircuitOpen",
        "LipwaProviderRequestsFailing",
        "LipwaProviderCredentialsRefused",
        "LipwaRateLimitHitsSpike",
        "LipwaRateLimitStorageDown",
        "LipwaRecoveryBacklogGrowing",
        "LipwaPaymentUnresolvedTooLong",
        "LipwaPaymentsParked",
        "LipwaWebhookDeliveriesFailing",
        "LipwaWorkerDown",
        "LipwaAnomalies",
        "LipwaWebhookDeliveriesGivenUp",
        "LipwaApiSlow",
    }
)


def redis_needed(settings: Settings, facts: Facts, processes: int) -> str | None:
    """Why this deployment runs several processes (and so needs shared counters), or None."""
    if processes > 1:
        return f"{processes} API processes (--processes)"
    if settings.role == "api":
        return "LIPWA_ROLE=api (API processes apart from workers)"
    if facts.recent_workers > 1:
        return f"{facts.recent_workers} workers seen in the last minute"
    return None


async def redis(settings: Settings, facts: Facts, processes: int) -> Check:
    name = "redis"
    why = redis_needed(settings, facts, processes)
    if not settings.redis_url:
        if why:
            return failed(
                name,
                f"{why} but no LIPWA_REDIS_URL: each process counts rate limits on its own, so "
                "the limits multiply",
                "Set LIPWA_REDIS_URL=redis://<host>:6379/0 on every process",
            )
        return passed(name, "not configured: rate-limit counters live in this one process")
    try:
        await ping_redis(settings.redis_url)
    except Exception as exc:
        return failed(
            name,
            f"LIPWA_REDIS_URL does not answer ({type(exc).__name__})",
            "Start Redis or fix LIPWA_REDIS_URL; rate limits fail without it",
        )
    return passed(name, "Redis answers PING")


def alert_rules(path: Path) -> Check:
    name = "alerts.rules"
    fix = (
        "Load deploy/prometheus/lipwa-alerts.yml in Prometheus (rule_files) and point "
        "`lipwa doctor --alert-rules` at the copy you deploy"
    )
    if not path.is_file():
        return warned(name, f"no alert rules file at {path}", fix)
    try:
        import yaml

        data = yaml.safe_load(path.read_text())
        names = {
            str(rule["alert"])
            for group in data.get("groups", [])
            for rule in group.get("rules", [])
            if "alert" in rule
        }
    except Exception as exc:
        return failed(name, f"{path} is not a Prometheus rules file ({type(exc).__name__})", fix)
    missing = sorted(EXPECTED_ALERTS - names)
    if missing:
        return warned(name, f"{path} lacks {', '.join(missing)}", fix)
    return passed(name, f"{path}: {len(names)} alert rules")
