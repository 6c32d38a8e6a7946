"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from lipwa.api.deps import ContainerDep
from lipwa.services.readiness import heartbeat_age_s, ping_redis
from lipwa.store.migrate import current_revision, head_revision, known_revisions

router = APIRouter(prefix="/health", tags=["health"])

WORKER_HEARTBEAT_MAX_AGE_S = 60.0


@router.get("/live", summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="The process can serve: database reachable, schema at head")
async def ready(c: ContainerDep) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        async with c.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
        revision = await current_revision(c.engine)
    except Exception as exc:  # readiness reports, never raises
        checks["database"] = f"error: {type(exc).__name__}"
        revision = None
    # Information, not a readiness failure: an open circuit means one provider account is
    # failing, and this process can still serve everything else.
    info: dict[str, Any] = {
        "circuits_open": [x for x in c.circuits.snapshot() if x["state"] != "closed"]
    }
    if checks["database"] == "ok":
        head = head_revision()
        if revision == head:
            checks["migrations"] = "ok"
        elif revision is None or revision in known_revisions():
            checks["migrations"] = f"at {revision}, this code needs {head}: run lipwa migrate"
        else:
            # Newer than this code (a rolling deploy migrated it, or a rollback of the code):
            # migrations only add, so this process still serves; taking every old process
            # out of the load balancer at once would refuse provider callbacks.
            checks["migrations"] = "ok"
            info["migrations"] = f"database at {revision}, newer than this code ({head})"
    ok = all(v == "ok" for v in checks.values())
    if c.settings.redis_url:
        # Information too: Redis only holds the shared rate limits, which fail open without
        # it; failing readiness would refuse provider callbacks for want of a rate limit.
        # LipwaRateLimitStorageDown alerts on it instead.
        try:
            await ping_redis(c.settings.redis_url)
            info["redis"] = "ok"
        except Exception as exc:
            info["redis"] = f"error: {type(exc).__name__}"
    if not c.settings.embeds_worker:
        # Information too: taking the API out of the load balancer because the worker is down
        # would refuse provider callbacks. LipwaWorkerDown alerts on it instead.
        info["worker"] = await _worker_info(c)
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks, "info": info},
        status_code=200 if ok else 503,
    )


async def _worker_info(c: ContainerDep) -> dict[str, Any]:
    try:
        async with c.sessions() as session:
            age = await heartbeat_age_s(session)
    except Exception as exc:
        return {"status": f"error: {type(exc).__name__}"}
    if age is None:
        return {"status": "never_seen"}
    status = "ok" if age <= WORKER_HEARTBEAT_MAX_AGE_S else "stale"
    return {"status": status, "last_heartbeat_age_s": round(age, 1)}
