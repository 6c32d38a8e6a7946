"""``lipwa keys status`` and ``lipwa keys rotate``: which key seals what, and re-sealing it all.

Both work on the database directly (LIPWA_DATABASE_URL) and may run beside a live gateway.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from lipwa.config import Settings
    from lipwa.vault import Vault

console = Console()

KIND_NAMES = {
    "provider_account": "provider accounts",
    "webhook_endpoint": "webhook endpoints",
    "idempotency_answer": "stored idempotent answers",
}
SHORT_NAMES = {
    "provider_account": "accounts",
    "webhook_endpoint": "endpoints",
    "idempotency_answer": "idem. answers",
}


def _settings_and_vault() -> tuple[Settings, Vault]:
    from lipwa.config import Settings
    from lipwa.container import ConfigurationError, load_vault

    try:
        settings = Settings()
        return settings, load_vault(settings)
    except (ValueError, ConfigurationError) as exc:
        console.print(f"[red]Configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


async def _counts(url: str) -> dict[str, Counter[str]]:
    from lipwa.services.key_rotation import version_counts
    from lipwa.store.db import make_engine, make_sessionmaker

    engine = make_engine(url, pool_size=2)
    try:
        async with make_sessionmaker(engine)() as session:
            return await version_counts(session)
    finally:
        await engine.dispose()


def status(as_json: bool) -> None:
    """Rows per key version, so the old key can be dropped once none remain."""
    from lipwa.keys import inspect_ring

    settings, vault = _settings_and_vault()
    counts = asyncio.run(_counts(settings.database_url))
    assert settings.encryption_keys is not None
    ring = inspect_ring(settings.encryption_keys.get_secret_value())
    versions = [k.version for k in ring]
    seen = sorted({v for c in counts.values() for v in c} - set(versions))
    totals = {v: sum(c.get(v, 0) for c in counts.values()) for v in versions + seen}
    if as_json:
        data: dict[str, Any] = {
            "active_version": vault.active_version,
            "keys": [
                {
                    "version": k.version,
                    "fingerprint": k.fingerprint,
                    "created": k.created.isoformat() if k.created else None,
                    "active": k.version == vault.active_version,
                    "rows": totals[k.version],
                }
                for k in ring
            ],
            "rows": {kind: dict(c) for kind, c in counts.items()},
            "missing_versions": {v: totals[v] for v in seen},
        }
        typer.echo(json.dumps(data, indent=2))
        raise typer.Exit(1 if seen else 0)
    table = Table("version", "fingerprint", "created", *SHORT_NAMES.values(), "total")
    for version in versions + seen:
        label = version + (" (active)" if version == vault.active_version else "")
        info = next((k for k in ring if k.version == version), None)
        if info is None:
            label = f"[red]{version} (not in ring)[/red]"
        table.add_row(
            label,
            info.fingerprint if info else "-",
            str(info.created or "-") if info else "-",
            *(str(counts[kind].get(version, 0)) for kind in KIND_NAMES),
            str(totals[version]),
        )
    console.print(table)
    for version in versions[1:]:
        if totals[version] == 0:
            console.print(f"No row uses {version}: it can be removed from LIPWA_ENCRYPTION_KEYS.")
        else:
            console.print(f"{totals[version]} row(s) still on {version}: run `lipwa keys rotate`.")
    if seen:
        console.print(
            f"[red]Rows sealed with {', '.join(seen)}, which the ring does not hold: they cannot "
            "be decrypted. Put that key back into LIPWA_ENCRYPTION_KEYS.[/red]"
        )
        raise typer.Exit(1)


async def _rotate(settings: Settings, vault: Vault, batch: int, progress: Progress) -> Any:
    from lipwa.services import audit
    from lipwa.services.key_rotation import SealedRow, pending_count, rotate
    from lipwa.store.db import make_engine, make_sessionmaker

    engine = make_engine(settings.database_url, pool_size=2)
    sessions = make_sessionmaker(engine)
    try:
        async with sessions() as session:
            total = await pending_count(session, vault.active_version)
        task = progress.add_task(f"Re-sealing under {vault.active_version}", total=total)

        def advance(_row: SealedRow, _outcome: str) -> None:
            progress.advance(task)

        report = await rotate(sessions, vault, batch=batch, on_row=advance)
        async with sessions() as session, session.begin():
            await audit.record(
                session,
                actor="cli",
                action="keys.rotate",
                target=vault.active_version,
                detail={
                    "rotated": dict(report.rotated),
                    "concurrent": report.concurrent,
                    "failed": len(report.failures),
                },
            )
        return report
    finally:
        await engine.dispose()


def rotate(batch: int) -> None:
    """Re-seal every secret under the active (first) key; resumable; safe beside the gateway."""
    settings, vault = _settings_and_vault()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        report = asyncio.run(_rotate(settings, vault, batch, progress))
    table = Table("secrets", "re-sealed")
    for kind, name in KIND_NAMES.items():
        table.add_row(name, str(report.rotated.get(kind, 0)))
    console.print(table)
    if report.concurrent:
        console.print(f"{report.concurrent} row(s) were changed meanwhile and are already current.")
    for kind, row, reason in report.failures:
        console.print(f"[red]FAILED[/red] {KIND_NAMES[kind]} {row}: {reason}")
    if report.failures:
        console.print(
            "[red]Some secrets were not re-sealed; keep the old key in the ring, fix them and "
            "run `lipwa keys rotate` again.[/red]"
        )
        raise typer.Exit(1)
    console.print(
        f"Every secret is sealed under {report.active_version}. Check with `lipwa keys status`, "
        "then remove the old key from LIPWA_ENCRYPTION_KEYS and restart."
    )
