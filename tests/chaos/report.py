"""The short summary table a chaos run prints (and writes next to its logs)."""

from __future__ import annotations

from typing import Any

from tests.chaos import checks
from tests.chaos.loadgen import tally
from tests.chaos.scenario import FAULTS, ChaosRun


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
    return str(value)


def summary(run: ChaosRun, findings: checks.Findings) -> str:
    cfg = run.config
    fig = checks.figures(run.facts)
    load = tally(run.facts.results)
    marks = run.timings.marks
    total = marks.get("collect", 0.0)
    cb = fig["callbacks"]
    req = fig["provider_requests"]
    hooks = fig["webhooks"]
    injected = run.injected
    rows: list[tuple[str, Any]] = [
        (
            "database",
            f"{cfg.backend}: {cfg.api_processes} API process(es), "
            f"{cfg.worker_processes or 'embedded'} worker(s), seed {cfg.seed}",
        ),
        (
            "faults",
            ", ".join(f"{k} {v:g}" for k, v in FAULTS.items())
            + f"; receiver 500s {run.facts.receiver['injected_failures']}",
        ),
        ("crash", run.killed or "-"),
        (
            "PostgreSQL",
            (
                f"{run.restart_info}, back after {run.restart_down_s:.1f} s"
                if run.restart_info
                else "-"
            ),
        ),
        (
            "payments",
            f"{fig['payments']} (planned {cfg.payments}, not sent "
            f"{load['unsent']}, concurrency {cfg.concurrency})",
        ),
        ("by status", fig["by_status"]),
        ("by provider", fig["by_provider_status"]),
        ("failure codes", fig["failure_codes"]),
        ("resolved by", fig["resolved_by"]),
        ("unknown by design", len(findings.by_design_unknown)),
        (
            "no receipt",
            f"{len(findings.receipt_by_query)} M-Pesa successes settled by STK "
            "query, callback never arrived",
        ),
        (
            "API requests",
            f"{load['requests']} ({load['retries']} retries with the same key, "
            f"{load['twins']} twins, {load['short_timeouts']} short timeouts)",
        ),
        ("API answers", load["answers"]),
        ("keys given up", dict(load["abandoned"]) or 0),
        ("keys left in_progress", fig["idempotency_keys_in_progress"]),
        (
            "callbacks",
            f"{cb['sent_by_provider']} sent, {cb['dropped']} dropped, "
            f"{cb['duplicated']} duplicated, {cb['held_back_reordered']} reordered, "
            f"{cb['answered_2xx']} answered 2xx, {cb['not_answered_2xx']} not",
        ),
        ("provider 5xx injected", _fmt(injected) if injected is not None else "n/a (log full)"),
        (
            "provider calls",
            f"{req['stk_push']} STK pushes, {req['rtp_post']} request-to-pay "
            f"POSTs, recovery queries: {req['stk_query']} STK, "
            f"{req['rtp_status_get']} MoMo GETs",
        ),
        (
            "webhooks",
            f"{hooks['events']} events, {hooks['deliveries']} deliveries, "
            f"{hooks['attempts']} attempts recorded ({hooks['retries']} retries); "
            f"receiver got {hooks['receiver_requests']} requests "
            f"({hooks['unrecorded_sends']} sends whose result was lost to the crash "
            f"or the restart), {hooks['received_twice_or_more']} events accepted "
            "more than once",
        ),
        ("anomalies", fig["anomalies"]),
        (
            "wall time",
            f"total {total:.0f} s: setup {marks.get('setup', 0):.0f} s, load "
            f"{run.load_s:.0f} s ({fig['payments'] / max(run.load_s, 0.001):.1f} "
            f"payments/s), drain {marks.get('drain', 0) - marks.get('load', 0):.0f} s"
            + ("" if run.drained else f" (NOT drained: {run.drain_left})"),
        ),
        ("verdict", "all invariants hold" if findings.ok else "VIOLATIONS"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"chaos run ({cfg.backend})", "-" * 60]
    lines += [f"{k.ljust(width)}  {_fmt(v)}" for k, v in rows]
    lines += [f"note: {n}" for n in findings.notes]
    return "\n".join(lines)
