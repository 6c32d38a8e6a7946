"""Re-encrypt every sealed secret under the active key, while the gateway runs.

Sealed secrets live in three places: provider account credentials, webhook endpoint signing
secrets, and the signing secret inside a stored idempotent answer (replayed to a client that
retries the create). ``rotate`` walks the rows *not* sealed under the active version (so a rerun
resumes where an interrupted one stopped), and swaps each one in its own short transaction,
conditional on the sealed value it read: a credential change made meanwhile by the API is never
overwritten; the row is read again and rotated only if it still needs it.

Operator procedure (README.md, "Going live"): put the new key first in ``LIPWA_ENCRYPTION_KEYS``
on every process and restart them, run ``lipwa keys rotate``, check ``lipwa keys status`` shows
no row on the old version, then remove the old key and restart again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from lipwa.store.tables import IdempotencyKey, ProviderAccount, WebhookEndpoint
from lipwa.vault import PREFIX, Vault, VaultError

ATTEMPTS = 3


@dataclass(frozen=True)
class SealedRow:
    kind: str  # provider_account | webhook_endpoint | idempotency_answer
    ident: tuple[str, ...]  # primary key
    sealed: str
    bound_to: str
    body: dict[str, Any] | None = None  # idempotency answers: the whole stored answer

    @property
    def label(self) -> str:
        return ":".join(self.ident)


def sealed_version(sealed: str) -> str | None:
    parts = sealed.split(".", 2)
    return parts[1] if len(parts) == 3 and parts[0] == PREFIX else None


class Source(Protocol):
    kind: str

    async def load(
        self,
        session: AsyncSession,
        skip_version: str | None,
        after: tuple[str, ...] | None,
        limit: int,
    ) -> list[SealedRow]: ...

    async def swap(
        self, session: AsyncSession, row: SealedRow, sealed: str, version: str
    ) -> bool: ...

    async def reload(self, session: AsyncSession, row: SealedRow) -> SealedRow | None: ...


def _not_on(column: ColumnElement[Any], version: str | None) -> list[ColumnElement[bool]]:
    return [] if version is None else [column.not_like(f"{PREFIX}.{version}.%")]


class _SimpleSource:
    """A table with a string ``id`` primary key and a ``secrets_sealed`` column."""

    def __init__(self, kind: str, table: Any, versioned: bool) -> None:
        self.kind = kind
        self._table = table
        self._versioned = versioned  # it has a key_version column to keep in step

    async def load(
        self,
        session: AsyncSession,
        skip_version: str | None,
        after: tuple[str, ...] | None,
        limit: int,
    ) -> list[SealedRow]:
        t = self._table
        query = select(t.id, t.secrets_sealed).where(*_not_on(t.secrets_sealed, skip_version))
        if after is not None:
            query = query.where(t.id > after[0])
        rows = await session.execute(query.order_by(t.id).limit(limit))
        return [SealedRow(self.kind, (i,), s, i) for i, s in rows.all()]

    async def swap(self, session: AsyncSession, row: SealedRow, sealed: str, version: str) -> bool:
        t = self._table
        values: dict[str, Any] = {"secrets_sealed": sealed}
        if self._versioned:
            values["key_version"] = version
        result = await session.execute(
            update(t)
            .where(t.id == row.ident[0], t.secrets_sealed == row.sealed)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def reload(self, session: AsyncSession, row: SealedRow) -> SealedRow | None:
        t = self._table
        sealed = await session.scalar(select(t.secrets_sealed).where(t.id == row.ident[0]))
        return None if sealed is None else SealedRow(self.kind, row.ident, sealed, row.bound_to)


class _IdempotencySource:
    """Stored idempotent answers that carry a sealed ``secret`` (webhook endpoint creation)."""

    kind = "idempotency_answer"

    @staticmethod
    def _secret() -> ColumnElement[Any]:
        return IdempotencyKey.response_body["secret"].as_string()

    def _row(self, merchant_id: str, key: str, body: dict[str, Any]) -> SealedRow:
        return SealedRow(
            self.kind,
            (merchant_id, key),
            str(body["secret"]),
            f"idempotency:{merchant_id}:{key}",
            body,
        )

    async def load(
        self,
        session: AsyncSession,
        skip_version: str | None,
        after: tuple[str, ...] | None,
        limit: int,
    ) -> list[SealedRow]:
        t, secret = IdempotencyKey, self._secret()
        query = select(t.merchant_id, t.key, t.response_body).where(
            secret.is_not(None), secret.like(f"{PREFIX}.%"), *_not_on(secret, skip_version)
        )
        if after is not None:
            query = query.where(tuple_(t.merchant_id, t.key) > tuple_(*after))
        rows = await session.execute(query.order_by(t.merchant_id, t.key).limit(limit))
        return [self._row(m, k, dict(b)) for m, k, b in rows.all()]

    async def swap(self, session: AsyncSession, row: SealedRow, sealed: str, version: str) -> bool:
        t = IdempotencyKey
        result = await session.execute(
            update(t)
            .where(
                t.merchant_id == row.ident[0],
                t.key == row.ident[1],
                self._secret() == row.sealed,
            )
            .values(response_body={**(row.body or {}), "secret": sealed})
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def reload(self, session: AsyncSession, row: SealedRow) -> SealedRow | None:
        body = await session.scalar(
            select(IdempotencyKey.response_body).where(
                IdempotencyKey.merchant_id == row.ident[0], IdempotencyKey.key == row.ident[1]
            )
        )
        if not body or "secret" not in body:
            return None
        return self._row(row.ident[0], row.ident[1], dict(body))


SOURCES: tuple[Source, ...] = (
    _SimpleSource("provider_account", ProviderAccount, versioned=True),
    _SimpleSource("webhook_endpoint", WebhookEndpoint, versioned=False),
    _IdempotencySource(),
)


# ----- reading ---------------------------------------------------------------------------------
async def sealed_rows(session: AsyncSession, batch: int = 500) -> list[SealedRow]:
    """Every sealed secret (the doctor opens each one to prove the ring can)."""
    found: list[SealedRow] = []
    for source in SOURCES:
        after: tuple[str, ...] | None = None
        while rows := await source.load(session, None, after, batch):
            found += rows
            after = rows[-1].ident
    return found


async def version_counts(session: AsyncSession) -> dict[str, Counter[str]]:
    """Rows per key version, per kind (``?`` for a value that is not sealed at all)."""
    counts: dict[str, Counter[str]] = {}
    for source in SOURCES:
        counter: Counter[str] = Counter()
        after: tuple[str, ...] | None = None
        while rows := await source.load(session, None, after, 1000):
            counter.update(sealed_version(r.sealed) or "?" for r in rows)
            after = rows[-1].ident
        counts[source.kind] = counter
    return counts


async def pending_count(session: AsyncSession, active: str) -> int:
    counts = await version_counts(session)
    return sum(n for c in counts.values() for v, n in c.items() if v != active)


# ----- rotating --------------------------------------------------------------------------------
@dataclass
class RotationReport:
    active_version: str
    rotated: Counter[str] = field(default_factory=Counter)  # per kind
    concurrent: int = 0  # changed by someone else meanwhile, and already on the active key
    gone: int = 0  # deleted meanwhile
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # kind, row, reason

    @property
    def ok(self) -> bool:
        return not self.failures


OnRow = Callable[[SealedRow, str], None]


async def rotate(
    sessions: async_sessionmaker[AsyncSession],
    vault: Vault,
    *,
    batch: int = 100,
    on_row: OnRow | None = None,
    sources: Sequence[Source] = SOURCES,
) -> RotationReport:
    """Re-seal every row not on ``vault.active_version``; one short transaction per row."""
    report = RotationReport(vault.active_version)
    for source in sources:
        after: tuple[str, ...] | None = None
        while True:
            async with sessions() as session:
                rows = await source.load(session, vault.active_version, after, batch)
            if not rows:
                break
            for row in rows:
                outcome = await _rotate_row(sessions, vault, source, row, report)
                if on_row is not None:
                    on_row(row, outcome)
            after = rows[-1].ident
    return report


async def _rotate_row(
    sessions: async_sessionmaker[AsyncSession],
    vault: Vault,
    source: Source,
    row: SealedRow,
    report: RotationReport,
) -> str:
    current: SealedRow | None = row
    for _ in range(ATTEMPTS):
        assert current is not None
        try:
            plaintext = vault.open(current.sealed, bound_to=current.bound_to)
        except VaultError as exc:
            report.failures.append((row.kind, row.label, str(exc)))
            return "failed"
        resealed = vault.seal(plaintext, bound_to=current.bound_to)
        async with sessions() as session, session.begin():
            if await source.swap(session, current, resealed, vault.active_version):
                report.rotated[row.kind] += 1
                return "rotated"
        # Someone changed (or deleted) the row since we read it: theirs wins; look again.
        async with sessions() as session:
            current = await source.reload(session, current)
        if current is None:
            report.gone += 1
            return "gone"
        if sealed_version(current.sealed) == vault.active_version:
            report.concurrent += 1
            return "concurrent"
    report.failures.append((row.kind, row.label, "kept changing; run the rotation again"))
    return "failed"


def count_by_version(rows: list[SealedRow]) -> Counter[str]:
    return Counter(sealed_version(r.sealed) or "?" for r in rows)
