"""What the chaos run must prove, checked on what the database, the simulator and the
merchant's receiver recorded. Pure functions over :class:`Facts`: no I/O here.

Each invariant collects its violations under one name; the test asserts that every list is
empty and prints the first few of each otherwise.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from lipwa.simulator.core import Simulator
from tests.chaos.loadgen import PaymentResult

FINAL = {"succeeded", "failed"}
STK_PUSH_PATH = "/mpesa/stkpush/v1/processrequest"
STK_QUERY_PATH = "/mpesa/stkpushquery/v1/query"
RTP_PATH = "/collection/v1_0/requesttopay"
SIM_REQUEST_LOG_MAX = 20_000  # the simulator keeps this many requests (core.Simulator)


@dataclass
class Facts:
    """Everything recorded by the end of the run."""

    results: list[PaymentResult]
    payments: list[dict[str, Any]]
    events: list[dict[str, Any]]
    deliveries: list[dict[str, Any]]
    webhook_attempts: int
    inbound: list[dict[str, Any]]
    anomalies: list[dict[str, Any]]
    idempotency: list[dict[str, Any]]
    sim_transactions: dict[str, list[dict[str, Any]]]
    sim_requests: list[dict[str, Any]]
    sim_callbacks: list[dict[str, Any]]
    receiver: dict[str, Any]


@dataclass
class Findings:
    violations: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    by_design_unknown: list[str] = field(default_factory=list)
    # M-Pesa successes settled by STK query whose callback never reached Lipwa: no receipt
    # (reconciliation matches them by reference).
    receipt_by_query: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, invariant: str, problem: str) -> None:
        self.violations[invariant].append(problem)

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())

    def report(self, limit: int = 8) -> str:
        lines = []
        for invariant, problems in self.violations.items():
            if problems:
                lines.append(f"{invariant}: {len(problems)} violation(s)")
                lines += [f"  - {p}" for p in problems[:limit]]
        return "\n".join(lines)


# ----- indexes -------------------------------------------------------------------------------
def _group(rows: Iterable[dict[str, Any]], key: str) -> dict[Any, list[dict[str, Any]]]:
    out: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        out[row[key]].append(row)
    return out


def _callback_payment_id(callback: Mapping[str, Any]) -> str:
    return str(callback["url"]).rstrip("/").rsplit("/", 1)[-1]


def _delivered(callback: Mapping[str, Any]) -> bool:
    code = callback.get("status_code")
    return code is not None and 200 <= int(code) < 300


# ----- the checks ----------------------------------------------------------------------------
def check_all(facts: Facts) -> Findings:
    findings = Findings()
    payments_by_ref = _group(facts.payments, "reference")
    _idempotency(facts, payments_by_ref, findings)
    _provider_agreement(facts, findings)
    _one_request_per_payment(facts, findings)
    _events(facts, findings)
    _webhooks(facts, findings)
    _nothing_lost(facts, findings)
    return findings


def _idempotency(
    facts: Facts, by_ref: Mapping[str, list[dict[str, Any]]], findings: Findings
) -> None:
    for result in facts.results:
        spec = result.spec
        rows = by_ref.get(spec.reference, [])
        if len(rows) > 1:
            findings.add(
                "one payment per Idempotency-Key",
                f"{spec.key}: {len(rows)} payments {[r['id'] for r in rows]}",
            )
        if len(result.payment_ids) > 1:
            findings.add(
                "one payment per Idempotency-Key",
                f"{spec.key}: answered with {sorted(result.payment_ids)}",
            )
        if result.payment_ids and rows and result.payment_ids != {rows[0]["id"]}:
            findings.add(
                "one payment per Idempotency-Key",
                f"{spec.key}: answered {sorted(result.payment_ids)}, stored {rows[0]['id']}",
            )
        if result.answered and not rows:
            findings.add("one payment per Idempotency-Key", f"{spec.key}: 201 but no payment")
        for error in result.errors:
            findings.add("clean answers", f"{spec.key}: {error}")
    # The stored answer of each key (mode-prefixed) names the payment of that key.
    by_key = {r.spec.key: r.spec.reference for r in facts.results}
    for row in facts.idempotency:
        reference = by_key.get(str(row["key"]).split(":", 1)[-1])
        body = row["response_body"]
        if isinstance(body, str):
            body = json.loads(body)
        if reference is None or row["state"] != "done" or not body:
            continue
        stored = [r["id"] for r in by_ref.get(reference, [])]
        if [body.get("id")] != stored:
            findings.add(
                "one payment per Idempotency-Key",
                f"{row['key']}: answer {body.get('id')}, payments {stored}",
            )
    known = {r.spec.reference for r in facts.results}
    for reference in by_ref:
        if reference not in known:
            findings.add("one payment per Idempotency-Key", f"unplanned payment {reference}")


def _sim_mpesa_by_reference(facts: Facts) -> dict[str, list[dict[str, Any]]]:
    records = [r for r in facts.sim_transactions.get("mpesa", []) if r.get("type") == "stk"]
    return _group(records, "account_reference")


def _sim_momo_by_reference(facts: Facts) -> dict[str, dict[str, Any]]:
    return {
        r["reference_id"]: r
        for r in facts.sim_transactions.get("momo", [])
        if r.get("operation") == "requesttopay"
    }


def _callbacks_by_key(facts: Facts) -> dict[str, list[dict[str, Any]]]:
    return _group(facts.sim_callbacks, "key")


def unknown_by_design(
    payment: Mapping[str, Any],
    record: Mapping[str, Any] | None,
    callbacks: Sequence[Mapping[str, Any]],
) -> bool:
    """An M-Pesa push whose answer never reached Lipwa (lost to a restart or a timeout), so
    there is no CheckoutRequestID to query and the design forbids a re-send: the payment
    stays ``unknown`` (parked for reconciliation) unless the callback arrives — and the
    simulator's callback for it was dropped or never answered 2xx."""
    return (
        payment["provider"] == "mpesa"
        and payment["status"] == "unknown"
        and payment["provider_ref"] is None
        and payment["send_state"] == "ambiguous"
        and payment["next_check_at"] is None
        and (record is None or not any(_delivered(c) for c in callbacks))
    )


def _provider_agreement(facts: Facts, findings: Findings) -> None:
    """Every payment final, and final as the simulator says (same receipt)."""
    name = "final and agrees with the simulator"
    mpesa = _sim_mpesa_by_reference(facts)
    momo = _sim_momo_by_reference(facts)
    callbacks = _callbacks_by_key(facts)
    for p in facts.payments:
        pid, status = p["id"], p["status"]
        if p["provider"] == "mpesa":
            records = mpesa.get(p["reference"], [])
            record = records[0] if records else None
            if len(records) > 1:
                findings.add("one provider request per payment", f"{pid}: {len(records)} prompts")
            sim_ok = record is not None and record["status"] == "completed"
            sim_failed = record is not None and record["status"] == "failed"
            sim_receipt = record["receipt"] if record else None
            ref_matches = record is None or p["provider_ref"] in (
                None,
                record["checkout_request_id"],
            )
            cbs = callbacks.get(record["checkout_request_id"], []) if record else []
        else:
            record = momo.get(p["provider_request_id"])
            sim_ok = record is not None and record["status"] == "SUCCESSFUL"
            sim_failed = record is not None and record["status"] == "FAILED"
            sim_receipt = record["financial_transaction_id"] if record else None
            ref_matches = record is None or (
                record["external_id"] == pid and p["provider_ref"] == record["reference_id"]
            )
            cbs = []
        if not ref_matches:
            findings.add(name, f"{pid}: provider reference differs from the simulator's")
        if record is not None and Decimal(str(record["amount"])) != Decimal(str(p["amount"])):
            findings.add(name, f"{pid}: amount {p['amount']} but simulator {record['amount']}")
        if status == "succeeded":
            if not sim_ok:
                sim_status = record["status"] if record else "no record"
                findings.add(name, f"{pid}: succeeded but simulator says {sim_status}")
            elif p["receipt"] is None and p["provider"] == "mpesa" and p["resolved_by"] == "query":
                # Daraja's STK query never carries the receipt (providers/mpesa/client.py); a
                # callback that reaches Lipwa later brings it (transitions._fill_receipt).
                if any(_delivered(c) for c in cbs):
                    findings.add(
                        name, f"{pid}: the callback brought receipt {sim_receipt}, not kept"
                    )
                else:
                    findings.receipt_by_query.append(pid)
            elif p["receipt"] != sim_receipt:
                findings.add(name, f"{pid}: receipt {p['receipt']} but simulator {sim_receipt}")
        elif status == "failed":
            if sim_ok:
                findings.add(name, f"{pid}: failed but the simulator took the money")
            elif record is None and p["resolved_by"] not in ("send", "expiry"):
                findings.add(name, f"{pid}: failed by {p['resolved_by']} with no provider record")
            elif record is not None and not sim_failed:
                findings.add(name, f"{pid}: failed but simulator still {record['status']}")
        elif unknown_by_design(p, record, cbs):
            findings.by_design_unknown.append(
                f"{pid} ({'prompt ' + record['status'] if record else 'no prompt at provider'})"
            )
        else:
            findings.add(
                "nothing stuck",
                f"{pid}: {p['provider']} {status} (send {p['send_state']}, "
                f"ref {p['provider_ref']}, next check {p['next_check_at']})",
            )


def _one_request_per_payment(facts: Facts, findings: Findings) -> None:
    """No double prompt: one STK push per M-Pesa payment; MoMo retries reuse one reference."""
    name = "one provider request per payment"
    if len(facts.sim_requests) >= SIM_REQUEST_LOG_MAX:
        findings.notes.append(
            "the simulator's request log is full: push counts come from its records only"
        )
        return
    by_ref = {p["reference"]: p for p in facts.payments}
    pushes: Counter[str] = Counter()
    ref_to_ext: dict[str, set[str]] = defaultdict(set)
    ext_to_ref: dict[str, set[str]] = defaultdict(set)
    for r in facts.sim_requests:
        body = r.get("body")
        if r["method"] != "POST" or not isinstance(body, dict):
            continue
        if r["path"] == STK_PUSH_PATH:
            pushes[str(body.get("AccountReference"))] += 1
        elif r["path"] == RTP_PATH:
            ref = str(r["headers"].get("x-reference-id"))
            ext = str(body.get("externalId"))
            ref_to_ext[ref].add(ext)
            ext_to_ref[ext].add(ref)
    for reference, count in pushes.items():
        if count > 1:
            findings.add(name, f"{reference}: {count} STK pushes")
        if reference not in by_ref:
            findings.add(name, f"STK push for {reference}, which is no payment")
    for ref, exts in ref_to_ext.items():
        if len(exts) > 1:
            findings.add(name, f"X-Reference-Id {ref} used by payments {sorted(exts)}")
    payments_by_id = {p["id"]: p for p in facts.payments}
    for ext, refs in ext_to_ref.items():
        payment = payments_by_id.get(ext)
        if len(refs) > 1:
            findings.add(name, f"{ext}: request-to-pay with {len(refs)} references")
        if payment is None:
            findings.add(name, f"request-to-pay for {ext}, which is no payment")
        elif refs != {payment["provider_request_id"]}:
            findings.add(name, f"{ext}: sent with {sorted(refs)}, stored another reference")


def _events(facts: Facts, findings: Findings) -> None:
    """created, then at most one unknown, then exactly one final event matching the row."""
    name = "one event per state change"
    by_payment = _group(facts.events, "resource_id")
    for p in facts.payments:
        events = by_payment.get(p["id"], [])
        types = [e["type"] for e in events]
        expected = ["payment.created"]
        if "payment.unknown" in types:
            expected.append("payment.unknown")
        if p["status"] in FINAL:
            expected.append(f"payment.{p['status']}")
        elif p["status"] == "unknown" and "payment.unknown" not in expected:
            expected.append("payment.unknown")
        if types != expected:
            findings.add(name, f"{p['id']} ({p['status']}): events {types}")
            continue
        last = events[-1]["data"]["object"]
        # A receipt filled in after a query settled the payment changes no state: no event.
        late_receipt = last["receipt"] is None and p["resolved_by"] == "query"
        if p["status"] in FINAL and (
            last["status"] != p["status"] or (last["receipt"] != p["receipt"] and not late_receipt)
        ):
            findings.add(name, f"{p['id']}: final event says {last['status']}/{last['receipt']}")
    payment_ids = {p["id"] for p in facts.payments}
    for resource in by_payment:
        if resource not in payment_ids:
            findings.add(name, f"events for {resource}, which is no payment")


def _webhooks(facts: Facts, findings: Findings) -> None:
    """Every event delivered (2xx) at least once, each delivery signed validly."""
    name = "every event delivered, signed"
    received: dict[str, dict[str, Any]] = facts.receiver["events"]
    for bad in facts.receiver["bad_signatures"]:
        findings.add(name, f"receiver refused a signature: {bad}")
    deliveries = {d["event_id"]: d for d in facts.deliveries}
    for event in facts.events:
        got = received.get(event["id"])
        row = deliveries.get(event["id"])
        if row is None:
            findings.add(name, f"{event['id']} ({event['type']}): no delivery row")
        elif row["status"] != "delivered":
            findings.add(name, f"{event['id']}: delivery {row['status']} after {row['attempts']}")
        if got is None or got["accepted"] < 1:
            findings.add(name, f"{event['id']} ({event['type']}): never received")
        elif got["type"] != event["type"] or got["payment_id"] != event["resource_id"]:
            findings.add(name, f"{event['id']}: received as {got['type']} of {got['payment_id']}")
    known = {e["id"] for e in facts.events}
    for event_id in received:
        if event_id not in known:
            findings.add(name, f"received {event_id}, which the database does not have")


def _nothing_lost(facts: Facts, findings: Findings) -> None:
    """Every callback answered 2xx was stored and applied; no contradicting reports."""
    name = "nothing received is lost"
    stored: Counter[str] = Counter(str(r["payment_id"]) for r in facts.inbound)
    answered: Counter[str] = Counter(
        _callback_payment_id(c) for c in facts.sim_callbacks if _delivered(c)
    )
    for payment_id, count in answered.items():
        if stored[payment_id] < count:
            findings.add(
                name, f"{payment_id}: {count} callbacks answered 2xx, {stored[payment_id]} stored"
            )
    for row in facts.inbound:
        if row["processed_at"] is None:
            findings.add(name, f"callback {row['id']} ({row['kind']}) stored, never applied")
        elif row["outcome"] not in ("applied", "noop"):
            findings.add(name, f"callback {row['id']}: {row['outcome']} ({row['detail']})")
    for anomaly in facts.anomalies:
        findings.add(name, f"anomaly {anomaly['kind']} on {anomaly['payment_id']}")


# ----- figures for the summary ---------------------------------------------------------------
def injected_5xx(
    requests: Sequence[dict[str, Any]], seed: int, faults_off_at: float, error_pct: float
) -> dict[str, int] | None:
    """Provider errors the simulator injected, recomputed from its seed and request log
    (its decisions are a pure function of seed and call key), before faults were turned off."""
    if len(requests) >= SIM_REQUEST_LOG_MAX:
        return None
    sim = Simulator(seed=seed)
    out = {"mpesa": 0, "momo": 0}
    mpesa_calls = 0
    momo_attempts: Counter[str] = Counter()
    for r in requests:
        on = r["at"] < faults_off_at
        if r["provider"] == "mpesa":
            if (r["method"], r["path"]) not in (
                ("GET", "/oauth/v1/generate"),
                ("POST", STK_PUSH_PATH),
                ("POST", STK_QUERY_PATH),
            ):
                continue
            mpesa_calls += 1
            key = f"mpesa:{mpesa_calls}"
        else:
            call = f"{r['method']} {r['path']} {r['headers'].get('x-reference-id')}"
            momo_attempts[call] += 1
            key = f"momo:{call}#{momo_attempts[call]}"
        if on and sim.chance("error", key) * 100 < error_pct:
            out[r["provider"]] += 1
    return out


def figures(facts: Facts) -> dict[str, Any]:
    payments = facts.payments
    by_status = Counter(p["status"] for p in payments)
    by_provider_status = Counter(f"{p['provider']} {p['status']}" for p in payments)
    failure_codes = Counter(p["failure_code"] for p in payments if p["status"] == "failed")
    resolved_by = Counter(str(p["resolved_by"]) for p in payments if p["status"] in FINAL)
    callbacks = facts.sim_callbacks
    originals = [c for c in callbacks if not c["duplicate"]]
    requests = facts.sim_requests
    receiver_events = facts.receiver["events"]
    return {
        "payments": len(payments),
        "by_status": dict(sorted(by_status.items())),
        "by_provider_status": dict(sorted(by_provider_status.items())),
        "failure_codes": dict(failure_codes.most_common()),
        "resolved_by": dict(sorted(resolved_by.items())),
        "callbacks": {
            "sent_by_provider": len(originals),
            "dropped": sum(c["dropped"] for c in originals),
            "duplicated": sum(c["duplicate"] for c in callbacks),
            "held_back_reordered": sum(c["held_back"] for c in callbacks),
            "answered_2xx": sum(_delivered(c) for c in callbacks),
            "not_answered_2xx": sum((not c["dropped"]) and not _delivered(c) for c in callbacks),
        },
        "provider_requests": {
            "stk_push": sum(r["path"] == STK_PUSH_PATH for r in requests),
            "stk_query": sum(r["path"] == STK_QUERY_PATH for r in requests),
            "rtp_post": sum(r["path"] == RTP_PATH and r["method"] == "POST" for r in requests),
            "rtp_status_get": sum(
                r["path"].startswith(RTP_PATH + "/") and r["method"] == "GET" for r in requests
            ),
            "log_full": len(requests) >= SIM_REQUEST_LOG_MAX,
        },
        "webhooks": {
            "events": len(facts.events),
            "deliveries": len(facts.deliveries),
            "attempts": facts.webhook_attempts,
            "retries": facts.webhook_attempts - len(facts.deliveries),
            "receiver_requests": facts.receiver["requests"],
            # Sends whose result was never recorded (worker killed, database away): sent again
            # once their lease ran out.
            "unrecorded_sends": facts.receiver["requests"] - facts.webhook_attempts,
            "receiver_injected_500": facts.receiver["injected_failures"],
            "received_twice_or_more": sum(e["accepted"] > 1 for e in receiver_events.values()),
        },
        "inbound_callbacks": len(facts.inbound),
        "idempotency_keys_in_progress": sum(k["state"] != "done" for k in facts.idempotency),
        "anomalies": len(facts.anomalies),
    }
