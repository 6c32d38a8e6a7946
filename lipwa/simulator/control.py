"""Control and inspection API of the simulator, under /_sim/."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from lipwa.simulator.core import Simulator

if TYPE_CHECKING:
    from lipwa.simulator.daraja import Daraja
    from lipwa.simulator.momo import MoMo


def _bad(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)


async def _json_object(request: Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def control_routes(sim: Simulator, daraja: Daraja, momo: MoMo) -> list[Route]:
    async def credentials(request: Request) -> Response:
        return JSONResponse({"mpesa": daraja.credentials(), "momo": momo.credentials()})

    async def requests_(request: Request) -> Response:
        provider = request.query_params.get("provider")
        path = request.query_params.get("path")
        rows = [
            r
            for r in sim.requests
            if (provider is None or r["provider"] == provider)
            and (path is None or r["path"].startswith(path))
        ]
        return JSONResponse({"count": len(rows), "requests": rows})

    async def callbacks(request: Request) -> Response:
        provider = request.query_params.get("provider")
        rows = [asdict(c) for c in sim.callbacks if provider is None or c.provider == provider]
        return JSONResponse({"count": len(rows), "callbacks": rows})

    async def faults(request: Request) -> Response:
        if request.method == "PUT":
            body = await _json_object(request)
            if body is None:
                return _bad("body must be a JSON object of fault values")
            try:
                sim.faults.update(body)
            except (ValueError, TypeError) as exc:
                return _bad(str(exc))
        return JSONResponse(asdict(sim.faults))

    async def settings(request: Request) -> Response:
        if request.method == "PUT":
            body = await _json_object(request)
            if body is None:
                return _bad("body must be a JSON object of settings")
            try:
                sim.settings.update(body)
            except (ValueError, TypeError) as exc:
                return _bad(str(exc))
        return JSONResponse(asdict(sim.settings))

    async def scenario(request: Request) -> Response:
        """Override the outcome for one reference or one phone: {provider, reference|phone,
        outcome}; outcome null removes the override."""
        body = await _json_object(request)
        if body is None:
            return _bad("body must be a JSON object")
        provider = body.get("provider")
        if provider not in {"mpesa", "momo"}:
            return _bad("provider must be 'mpesa' or 'momo'")
        selectors = [k for k in ("reference", "phone") if body.get(k)]
        if len(selectors) != 1:
            return _bad("give exactly one of 'reference' or 'phone'")
        key = (provider, selectors[0], str(body[selectors[0]]))
        outcome = body.get("outcome")
        if outcome is None:
            sim.overrides.pop(key, None)
        else:
            known = daraja.outcomes() if provider == "mpesa" else momo.outcomes()
            if outcome not in known:
                return _bad(f"unknown outcome {outcome!r}; known: {sorted(known)}")
            sim.overrides[key] = str(outcome)
        return JSONResponse(
            {"overrides": [{"provider": p, k: v, "outcome": o} for (p, k, v), o in
                           sim.overrides.items()]}
        )

    async def reset(request: Request) -> Response:
        sim.reset()
        return JSONResponse({"reset": True})

    async def accounts(request: Request) -> Response:
        return JSONResponse({k: str(v) for k, v in sim.ledger.balances.items()})

    async def transactions(request: Request) -> Response:
        provider = request.query_params.get("provider")
        out = {
            p: list(records.values())
            for p, records in sim.transactions.items()
            if provider is None or p == provider
        }
        return JSONResponse(out)

    async def expire_tokens(request: Request) -> Response:
        provider = request.query_params.get("provider")
        return JSONResponse({"expired": sim.expire_tokens(provider)})

    async def mpesa_statement(request: Request) -> Response:
        shortcode = request.query_params.get("shortcode")
        return PlainTextResponse(daraja.statement_csv(shortcode), media_type="text/csv")

    async def momo_statement(request: Request) -> Response:
        product = request.query_params.get("product")
        return PlainTextResponse(momo.statement_csv(product), media_type="text/csv")

    return [
        Route("/_sim/credentials", credentials, methods=["GET"]),
        Route("/_sim/requests", requests_, methods=["GET"]),
        Route("/_sim/callbacks", callbacks, methods=["GET"]),
        Route("/_sim/faults", faults, methods=["GET", "PUT"]),
        Route("/_sim/settings", settings, methods=["GET", "PUT"]),
        Route("/_sim/scenario", scenario, methods=["PUT", "POST"]),
        Route("/_sim/reset", reset, methods=["POST"]),
        Route("/_sim/accounts", accounts, methods=["GET"]),
        Route("/_sim/transactions", transactions, methods=["GET"]),
        Route("/_sim/tokens/expire", expire_tokens, methods=["POST"]),
        Route("/_sim/statements/mpesa.csv", mpesa_statement, methods=["GET"]),
        Route("/_sim/statements/momo.csv", momo_statement, methods=["GET"]),
    ]
