"""Which addresses may deliver provider callbacks (``LIPWA_CALLBACK_SOURCES``).

Daraja signs nothing and MTN's callbacks are hints, so besides the unguessable URL and the
cross-checks, the go-live checklists ask for a source allow-list: Safaricom publishes its
callback addresses, MTN gives its own on request. Blank (the default) takes callbacks from
anywhere. Behind a proxy, the source is the client uvicorn reads from ``X-Forwarded-For``,
which it believes only from the proxies in ``FORWARDED_ALLOW_IPS`` (uvicorn's setting,
127.0.0.1 by default). A refused callback is answered 403 and not stored: nobody allowed
sent it.
"""

from __future__ import annotations

import structlog
from fastapi import Depends, HTTPException, Request

from lipwa import metrics
from lipwa.api.deps import ContainerDep
from lipwa.ip_allowlist import source_allowed

log = structlog.get_logger("lipwa.callbacks")


async def _require_allowed_source(request: Request, c: ContainerDep) -> None:
    host = request.client.host if request.client else None
    if not source_allowed(host, c.settings.callback_networks):
        metrics.CALLBACKS_REFUSED.labels("source").inc()
        log.warning("callback_source_refused", remote_addr=host)
        raise HTTPException(403, "callbacks are not taken from this address")


ALLOWED_SOURCE = Depends(_require_allowed_source)
