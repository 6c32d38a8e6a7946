"""``lipwa events …``: operator commands on the database directly, across merchants."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from lipwa.clock import isoformat
from lipwa.config import Settings
from lipwa.container import ConfigurationError, Container
from lipwa.errors import ApiError, not_found
from lipwa.services import webhooks
from lipwa.store.tables import Event

T = TypeVar("T")


def _run(settings: Settings, console: Console, work: Callable[[Container], Awaitable[T]]) -> T:
    async def main() -> T:
        container = Container.build(settings)
        try:
            return await work(container)
        finally:
            await container.close()

    try:
        return asyncio.run(main())
    except ConfigurationError as exc:
        console.print(f"[red]Configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc
    except ApiError as exc:
        console.print(f"[red]{exc.code}:[/red] {exc.message}")
        raise typer.Exit(1) from exc


async def _event(session: AsyncSession, event_id: str) -> Event:
    event = await session.get(Event, event_id)
    if event is None:
        raise not_found("event", event_id)
    return event


def redeliver(settings: Settings, console: Console, event_id: str, endpoint: str | None) -> None:
    async def work(c: Container) -> tuple[int, list[webhooks.DeliveryRecord]]:
        async with c.sessions() as session, session.begin():
            event = await _event(session, event_id)
            queued = await webhooks.redeliver(session, event, endpoint)
        async with c.sessions() as session:
            return len(queued), await webhooks.deliveries_for(session, event)

    count, records = _run(settings, console, work)
    console.print(f"Queued {count} delivery(ies) of {event_id}; a running worker sends them.")
    console.print(_table(records))


def deliveries(settings: Settings, console: Console, event_id: str) -> None:
    async def work(c: Container) -> list[webhooks.DeliveryRecord]:
        async with c.sessions() as session:
            return await webhooks.deliveries_for(session, await _event(session, event_id))

    records = _run(settings, console, work)
    if not records:
        console.print(f"No webhook deliveries for {event_id}.")
        return
    console.print(_table(records))


def _table(records: list[webhooks.DeliveryRecord]) -> Table:
    table = Table("delivery", "endpoint", "status", "attempt at", "HTTP", "ms", "error")
    for record in records:
        d = record.delivery
        head = [d.id, f"{record.endpoint.id}\n{record.endpoint.url}", d.status]
        if not record.attempts:
            table.add_row(*head, f"next {isoformat(d.next_attempt_at) or '-'}", "", "", "")
        for i, attempt in enumerate(record.attempts):
            table.add_row(
                *(head if i == 0 else ["", "", ""]),
                isoformat(attempt.attempted_at) or "",
                str(attempt.status_code or "-"),
                str(attempt.duration_ms),
                attempt.error or "",
            )
    return table
