"""``lipwa keys rotate|status|generate`` and the rotation service: re-sealing every secret under
a new key while the gateway runs, resumably, never overwriting a concurrent change."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from lipwa.cli import app
from lipwa.services import key_rotation
from lipwa.services.key_rotation import SealedRow, rotate, version_counts
from lipwa.store.db import make_engine, make_sessionmaker
from lipwa.store.tables import IdempotencyKey, ProviderAccount, WebhookEndpoint
from lipwa.vault import VaultError, generate_key_text
from tests.ops_support import (
    add_account,
    add_endpoint,
    add_idempotent_answer,
    add_merchant,
    fresh_database,
    run_db,
    vault_of,
)

OLD = generate_key_text("v20250101")
NEW = generate_key_text("v20260101")
runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> Any:
    with fresh_database(tmp_path) as url:
        yield url


def seed(url: str, ring: str, accounts: int = 3) -> dict[str, list[str]]:
    vault = vault_of(ring)

    async def work(session: AsyncSession) -> dict[str, list[str]]:
        merchant = await add_merchant(session)
        ids = [await add_account(session, vault, merchant) for _ in range(accounts)]
        endpoints = [await add_endpoint(session, vault, merchant, "test") for _ in range(2)]
        await add_idempotent_answer(session, vault, merchant, "idem-1", "whsec_replayed")
        return {"accounts": ids, "endpoints": endpoints, "merchant": [merchant]}

    return run_db(url, work)


def open_everything(url: str, ring: str) -> dict[str, Any]:
    """Decrypt every sealed secret with ``ring`` alone; raise VaultError if one does not."""
    vault = vault_of(ring)

    async def work(session: AsyncSession) -> dict[str, Any]:
        from sqlalchemy import select

        opened: dict[str, Any] = {}
        for account in await session.scalars(select(ProviderAccount)):
            opened[account.id] = vault.open(account.secrets_sealed, bound_to=account.id)
            assert account.key_version == vault.active_version
        for endpoint in await session.scalars(select(WebhookEndpoint)):
            opened[endpoint.id] = vault.open(endpoint.secrets_sealed, bound_to=endpoint.id)
        for row in await session.scalars(select(IdempotencyKey)):
            bound = f"idempotency:{row.merchant_id}:{row.key}"
            opened[row.key] = vault.open(row.response_body["secret"], bound_to=bound)
        return opened

    return run_db(url, work)


def counts(url: str) -> dict[str, dict[str, int]]:
    return {k: dict(v) for k, v in run_db(url, version_counts).items()}


def cli(url: str, ring: str | None, *args: str) -> Any:
    env = {"LIPWA_DATABASE_URL": url, "COLUMNS": "200"}
    if ring is not None:
        env["LIPWA_ENCRYPTION_KEYS"] = ring
    return runner.invoke(app, list(args), env=env)


def test_rotate_then_drop_the_old_key(db: str) -> None:
    seed(db, OLD)
    before = open_everything(db, OLD)
    with pytest.raises(VaultError):
        open_everything(db, NEW)

    result = cli(db, f"{NEW},{OLD}", "keys", "rotate")
    assert result.exit_code == 0, result.output
    assert re.search(r"provider accounts\s+│\s+3", result.output)
    assert re.search(r"webhook endpoints\s+│\s+2", result.output)
    assert re.search(r"stored idempotent answers\s+│\s+1", result.output)
    assert "Every secret is sealed under v20260101" in result.output

    status = cli(db, f"{NEW},{OLD}", "keys", "status", "--json")
    assert status.exit_code == 0, status.output
    keys = {k["version"]: k for k in json.loads(status.output)["keys"]}
    assert keys["v20250101"]["rows"] == 0 and keys["v20260101"]["rows"] == 6
    assert keys["v20260101"]["active"] is True

    # The old key is gone from the ring: everything still opens, with the same plaintext.
    assert open_everything(db, NEW) == before
    # A second run has nothing left to do.
    again = cli(db, NEW, "keys", "rotate")
    assert again.exit_code == 0 and re.search(r"provider accounts\s+│\s+0", again.output)


def test_status_names_rows_the_ring_cannot_open(db: str) -> None:
    seed(db, OLD, accounts=1)
    human = cli(db, NEW, "keys", "status")
    assert human.exit_code == 1
    assert "v20250101 (not in ring)" in human.output
    assert "cannot be decrypted" in human.output
    machine = json.loads(cli(db, NEW, "keys", "status", "--json").output)
    assert machine["missing_versions"] == {"v20250101": 4}

    # Rotating without the old key fails clearly, row by row, and changes nothing.
    result = cli(db, NEW, "keys", "rotate")
    assert result.exit_code == 1
    assert result.output.count("FAILED") == 4
    assert "key version 'v20250101' not in ring" in result.output
    assert counts(db)["provider_account"] == {"v20250101": 1}


def test_status_says_when_the_old_key_can_go(db: str) -> None:
    seed(db, OLD, accounts=1)
    result = cli(db, f"{NEW},{OLD}", "keys", "status")
    assert result.exit_code == 0
    assert "4 row(s) still on v20250101: run `lipwa keys rotate`" in result.output
    cli(db, f"{NEW},{OLD}", "keys", "rotate")
    result = cli(db, f"{NEW},{OLD}", "keys", "status")
    assert "No row uses v20250101: it can be removed" in result.output


def test_rotation_needs_a_key_ring(db: str) -> None:
    result = cli(db, None, "keys", "rotate")
    assert result.exit_code == 2
    assert "LIPWA_ENCRYPTION_KEYS is not set" in result.output
    short = cli(db, "v1:c2hvcnQ=", "keys", "status")
    assert short.exit_code == 2 and "must be 32 bytes" in short.output


def test_generate_makes_date_stamped_keys() -> None:
    result = runner.invoke(app, ["keys", "generate"])
    assert result.exit_code == 0
    assert re.fullmatch(r"v\d{8}:[A-Za-z0-9+/]{43}=\n", result.output)
    named = runner.invoke(app, ["keys", "generate", "--version", "v7"])
    assert named.output.startswith("v7:")


class Interrupt(Exception):
    pass


def _rotate(url: str, ring: str, **kwargs: Any) -> key_rotation.RotationReport:
    async def main() -> key_rotation.RotationReport:
        engine = make_engine(url, pool_size=2)
        try:
            return await rotate(make_sessionmaker(engine), vault_of(ring), **kwargs)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def test_an_interrupted_rotation_resumes(db: str) -> None:
    seed(db, OLD, accounts=5)
    seen: list[str] = []

    def stop_after_three(row: SealedRow, outcome: str) -> None:
        seen.append(row.label)
        if len(seen) == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        _rotate(db, f"{NEW},{OLD}", batch=2, on_row=stop_after_three)
    assert counts(db)["provider_account"] == {"v20260101": 3, "v20250101": 2}

    resumed: list[str] = []
    report = _rotate(
        db, f"{NEW},{OLD}", batch=2, on_row=lambda row, outcome: resumed.append(row.label)
    )
    assert report.ok
    # Only what was left: 2 accounts, 2 endpoints, 1 idempotent answer; nothing twice.
    assert dict(report.rotated) == {
        "provider_account": 2,
        "webhook_endpoint": 2,
        "idempotency_answer": 1,
    }
    assert not set(resumed) & set(seen)
    open_everything(db, NEW)


class RacingSource:
    """Wraps a source: just before its first swap, another writer changes the same row."""

    def __init__(self, inner: Any, url: str, ring: str, new_secret: dict[str, Any]) -> None:
        self.inner, self.kind = inner, inner.kind
        self.url, self.ring, self.new_secret = url, ring, new_secret
        self.raced = False

    async def load(self, *args: Any) -> list[SealedRow]:
        rows: list[SealedRow] = await self.inner.load(*args)
        return rows

    async def reload(self, session: AsyncSession, row: SealedRow) -> SealedRow | None:
        found: SealedRow | None = await self.inner.reload(session, row)
        return found

    async def swap(self, session: AsyncSession, row: SealedRow, sealed: str, version: str) -> bool:
        if not self.raced:
            self.raced = True
            await self._concurrent_update(row.ident[0])
        ok: bool = await self.inner.swap(session, row, sealed, version)
        return ok

    async def _concurrent_update(self, account_id: str) -> None:
        # The admin API in another process, sealing new credentials with *its* ring.
        from sqlalchemy import update

        vault = vault_of(self.ring)
        engine = make_engine(self.url, pool_size=1)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                await session.execute(
                    update(ProviderAccount)
                    .where(ProviderAccount.id == account_id)
                    .values(
                        secrets_sealed=vault.seal(self.new_secret, bound_to=account_id),
                        key_version=vault.active_version,
                    )
                )
        finally:
            await engine.dispose()


@pytest.mark.parametrize("writer_ring", [f"{NEW},{OLD}", OLD], ids=["new-ring", "old-ring"])
def test_a_concurrent_credential_change_is_never_overwritten(db: str, writer_ring: str) -> None:
    ids = seed(db, OLD, accounts=2)["accounts"]
    changed = {"consumer_key": "rotated-by-admin", "consumer_secret": "s", "passkey": "p"}
    racing = RacingSource(key_rotation.SOURCES[0], db, writer_ring, changed)

    report = _rotate(db, f"{NEW},{OLD}", sources=[racing, *key_rotation.SOURCES[1:]])

    assert report.ok and racing.raced
    opened = open_everything(db, NEW)  # every row ends on the new key
    first = sorted(ids)[0]
    assert opened[first] == changed  # the admin's change survived the rotation
    other = sorted(ids)[1]
    assert opened[other]["consumer_key"] == "ck-seed-0001"
    if writer_ring == OLD:  # a process still on the old ring: its value is rotated in turn
        assert report.rotated["provider_account"] == 2 and report.concurrent == 0
    else:  # already sealed under the new key by the writer: left alone
        assert report.rotated["provider_account"] == 1 and report.concurrent == 1
