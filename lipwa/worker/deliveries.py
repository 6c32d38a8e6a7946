"""Worker job: send due webhook deliveries (the logic lives in ``lipwa.services.webhooks``)."""

from __future__ import annotations

from lipwa.container import Container
from lipwa.worker.runner import Job


async def deliver_webhooks(container: Container) -> int:
    return await container.webhooks.run_once()


def job() -> Job:
    return Job(name="webhook_deliveries", run_once=deliver_webhooks, idle_s=1.0)
