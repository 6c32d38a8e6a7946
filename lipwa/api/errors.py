"""Every error leaves the API as one object; a 5xx never shows internals."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from lipwa.domain.errors import DomainError
from lipwa.errors import ApiError
from lipwa.services.accounts import NotFound

log = structlog.get_logger("lipwa.api")

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": 'Invalid request: `{"error": {type, code, message, param}}`'},
    401: {"description": "Missing or invalid API key"},
    404: {"description": "No such resource for this merchant"},
    409: {"description": "Idempotency conflict"},
}


# PostgreSQL's "character not in repertoire" and "untranslatable character" (NUL in text
# and in JSON).
UNSTORABLE_TEXT = frozenset({"22021", "22P05"})


def _render(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _param(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def validation_error(errors: list[Any]) -> ApiError:
    first = errors[0] if errors else {}
    param = _param(tuple(first.get("loc", ())))
    message = first.get("msg", "Invalid request")
    if param:
        message = f"{param}: {message}"
    return ApiError(400, "invalid_request_error", "parameter_invalid", message, param)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _render(exc)

    @app.exception_handler(DomainError)
    async def _domain_error(request: Request, exc: DomainError) -> JSONResponse:
        return _render(ApiError(400, "invalid_request_error", exc.code, exc.message, exc.param))

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return _render(
            ApiError(404, "invalid_request_error", "resource_missing", "No such resource")
        )

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _render(validation_error(list(exc.errors())))

    @app.exception_handler(ValidationError)
    async def _model_invalid(request: Request, exc: ValidationError) -> JSONResponse:
        errors = [{**e, "loc": ("credentials", *e["loc"])} for e in exc.errors()]
        return _render(validation_error(errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}
        return _render(
            ApiError(
                exc.status_code,
                "invalid_request_error",
                codes.get(exc.status_code, "http_error"),
                str(exc.detail),
            )
        )

    @app.exception_handler(DBAPIError)
    async def _database_refused(request: Request, exc: DBAPIError) -> JSONResponse:
        # Text PostgreSQL cannot store (a NUL character): bad input, and its transaction
        # rolled back, so nothing was written. Anything else is ours.
        if getattr(exc.orig, "sqlstate", None) in UNSTORABLE_TEXT:
            return _render(
                ApiError(
                    400,
                    "invalid_request_error",
                    "invalid_character",
                    "Text may not contain NUL characters (\\u0000)",
                )
            )
        return await _crash(request, exc)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", path=request.url.path)
        return _render(
            ApiError(500, "api_error", "internal_error", "Something went wrong on our side")
        )
