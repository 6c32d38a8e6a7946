"""The simulator as one ASGI app: Daraja and MoMo on their real paths, control under /_sim/."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lipwa.simulator.control import control_routes
from lipwa.simulator.core import Faults, SimSettings, Simulator
from lipwa.simulator.daraja import Daraja
from lipwa.simulator.momo import MoMo


def _is_daraja_path(path: str) -> bool:
    return path.startswith(("/mpesa/", "/oauth/"))


def _daraja_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"requestId": uuid.uuid4().hex[:24], "errorCode": code, "errorMessage": message},
        status_code=status,
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    path = request.url.path
    if path.startswith("/_sim/"):
        return JSONResponse({"error": str(getattr(exc, "detail", "error"))}, status_code=status)
    if _is_daraja_path(path):
        if status == 405:
            return _daraja_error(405, "405.001", "Method Not Allowed")
        if status == 404:
            return _daraja_error(404, "404.001.01", "Resource not found")
        return _daraja_error(500, "500.003.1001", "Internal Server Error")
    if status == 404:
        return JSONResponse(
            {"code": "RESOURCE_NOT_FOUND", "message": "Requested resource was not found."},
            status_code=404,
        )
    if status == 405:
        return JSONResponse(
            {"code": "NOT_ALLOWED", "message": "Method not allowed."}, status_code=405
        )
    return JSONResponse(
        {
            "code": "INTERNAL_PROCESSING_ERROR",
            "message": "An internal error occurred while processing.",
        },
        status_code=500,
    )


class AnswerDelay:
    """Holds back provider answers by ``faults.answer_delay_ms`` after they were produced."""

    def __init__(self, app: ASGIApp, sim: Simulator) -> None:
        self.app = app
        self.sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        delay = self.sim.faults.answer_delay_ms
        if scope["type"] != "http" or delay <= 0 or scope["path"].startswith("/_sim/"):
            await self.app(scope, receive, send)
            return

        async def delayed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                await asyncio.sleep(delay / 1000)
            await send(message)

        await self.app(scope, receive, delayed_send)


def build_app(sim: Simulator | None = None) -> Starlette:
    """Build the simulator app around ``sim`` (a fresh one with defaults if omitted)."""
    sim = sim or Simulator()
    daraja = Daraja(sim)
    momo = MoMo(sim)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await sim.close()

    app = Starlette(
        routes=[*control_routes(sim, daraja, momo), *daraja.routes(), *momo.routes()],
        exception_handlers={HTTPException: _http_error, Exception: _http_error},
        middleware=[Middleware(AnswerDelay, sim=sim)],
        lifespan=lifespan,
    )
    app.state.sim = sim
    app.state.daraja = daraja
    app.state.momo = momo
    return app


def create_app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory`` (reads LIPWA_SIM_SEED)."""
    import os

    return build_app(Simulator(seed=int(os.environ.get("LIPWA_SIM_SEED", "0"))))


__all__ = ["Faults", "SimSettings", "Simulator", "build_app"]
