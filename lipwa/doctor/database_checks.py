"""The database: the right engine for the traffic, schema at head, clock, live workers."""

from __future__ import annotations

from lipwa.doctor.facts import Facts
from lipwa.doctor.result import Check, failed, passed, warned

MAX_CLOCK_SKEW_S = 5.0
HEARTBEAT_MAX_AGE_S = 60.0


def reachable(facts: Facts) -> list[Check]:
    if facts.error is None:
        return [passed("database.reachable", f"{facts.dialect} answers")]
    return [
        failed(
            "database.reachable",
            f"cannot read the database ({facts.error})",
            "Check LIPWA_DATABASE_URL, that the server runs and accepts this user",
        )
    ]


def engine(facts: Facts, live: bool) -> Check:
    name = "database.engine"
    if facts.dialect == "postgresql":
        return passed(name, "PostgreSQL")
    if live:
        return failed(
            name,
            "SQLite holds production data: one writer at a time, one machine, no failover",
            "Move to PostgreSQL: LIPWA_DATABASE_URL=postgresql+asyncpg://…, then `lipwa migrate`",
        )
    return passed(name, f"{facts.dialect} (fine for a sandbox gateway)")


def migrations(facts: Facts) -> list[Check]:
    if facts.error is not None:
        return []
    if facts.at_head:
        return [passed("database.migrations", f"schema at head ({facts.head})")]
    return [
        failed(
            "database.migrations",
            f"schema at {facts.revision or 'nothing (empty database)'}, head is {facts.head}; "
            "account, key and worker checks skipped",
            "Run `lipwa migrate` (take a backup first)",
        )
    ]


def clock(facts: Facts) -> list[Check]:
    if facts.error is not None:
        return []
    if facts.clock_skew_s is None:
        return [passed("database.clock", "SQLite shares this machine's clock")]
    skew = facts.clock_skew_s
    if abs(skew) > MAX_CLOCK_SKEW_S:
        return [
            warned(
                "database.clock",
                f"the database clock is {skew:+.1f} s from this machine's",
                "Run NTP (chrony or systemd-timesyncd) on every host; timestamps, webhook "
                "signatures and recovery deadlines rely on it",
            )
        ]
    return [passed("database.clock", f"database clock within {abs(skew):.1f} s of ours")]


def heartbeat(facts: Facts) -> list[Check]:
    if not facts.at_head:
        return []
    name = "worker.heartbeat"
    if facts.last_heartbeat is None:
        return [
            warned(
                name,
                "no worker has ever run against this database",
                "Start `lipwa serve` (LIPWA_ROLE=all) or `lipwa worker` beside API processes",
            )
        ]
    age = (facts.read_at - facts.last_heartbeat).total_seconds()
    if age > HEARTBEAT_MAX_AGE_S:
        return [
            failed(
                name,
                f"the last worker heartbeat is {age:.0f} s old: status checks and webhooks stall",
                "Start or restart the worker (`lipwa worker`, or `lipwa serve` with "
                "LIPWA_ROLE=all) and check its logs",
            )
        ]
    return [passed(name, f"{facts.recent_workers} worker(s) seen in the last minute")]
