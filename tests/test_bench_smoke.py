"""The benchmark commands still run: each, tiny, through its real command line.

Never asserts speed (CI machines vary); only that a result row with positive throughput is
written. SQLite and the httpx load generator only, so nothing beyond the venv is needed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(args: list[str], timeout_s: float) -> None:
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_simulator_benchmark_writes_a_row(tmp_path: Path) -> None:
    _run(
        ["bench.simulator", "--requests", "20", "--concurrency", "4",
         "--callback-wait", "5", "--out", str(tmp_path)],
        timeout_s=60,
    )
    result = json.loads((tmp_path / "simulator.json").read_text())
    rows = {row["provider"]: row for row in result["rows"]}
    assert set(rows) == {"mpesa", "momo"}
    for row in rows.values():
        assert row["accepted"] == 20
        assert row["accepted_per_s"] > 0
        assert row["callbacks"] > 0
    assert (tmp_path / "simulator.md").read_text().startswith("### ")


def test_gateway_benchmark_writes_rows(tmp_path: Path) -> None:
    _run(
        ["bench.gateway", "--db", "sqlite", "--workers", "1", "--warmup", "0",
         "--duration", "1", "--concurrency", "4", "--loadgen", "httpx", "--out", str(tmp_path)],
        timeout_s=120,
    )
    result = json.loads((tmp_path / "gateway.json").read_text())
    rows = {row["target"]: row for row in result["rows"]}
    assert set(rows) == {"ceiling", "provider-ceiling", "gateway"}
    for row in rows.values():
        assert row["database"] == "sqlite"
        assert row["ok"] > 0
        assert row["per_s"] > 0
    assert sum(rows["gateway"]["payments"].values()) >= rows["gateway"]["ok"]
    # The provider ceiling pushed each payment and took the callbacks the simulator sent.
    pushed = rows["provider-ceiling"]["payments"]
    assert pushed["written"] >= rows["provider-ceiling"]["ok"]
    assert pushed["called back"] > 0


def test_recovery_benchmark_drains_a_backlog(tmp_path: Path) -> None:
    _run(
        ["bench.recovery", "--db", "sqlite", "--workers", "1", "--payments", "30",
         "--scenarios", "mixed-unpaced", "--drain-timeout", "30", "--out", str(tmp_path)],
        timeout_s=60,
    )
    result = json.loads((tmp_path / "recovery.json").read_text())
    (row,) = result["rows"]
    assert row["database"] == "sqlite"
    assert row["payments"] == 30
    assert row["drained"] is True
    assert row["open_left"] == 0
    assert row["per_s"] > 0
    assert (tmp_path / "recovery.md").read_text().startswith("### ")


def test_statements_benchmark_counts_a_payment(tmp_path: Path) -> None:
    _run(["bench.statements", "--db", "sqlite", "--payments", "2", "--out", str(tmp_path)],
         timeout_s=60)
    result = json.loads((tmp_path / "statements.json").read_text())
    assert result["payments"] == 2
    # A payment writes at least itself, its idempotency key and the callback that settles it.
    assert {"INSERT payments", "INSERT idempotency_keys", "INSERT inbound_callbacks"} <= set(
        result["by_kind"]
    )
    assert result["gateway_cpu_ms_per_payment"] > 0
