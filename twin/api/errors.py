"""JSON errors: every failure is ``{"error": "<code>", "detail": ...}`` with the right status code."""

from __future__ import annotations

from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    """A request that cannot be served: ``status`` (HTTP), ``error`` (a short code), ``detail``."""

    def __init__(self, status: int, error: str, detail: object = None, headers: dict[str, str] | None = None):
        super().__init__(f"{status} {error}: {detail}")
        self.status, self.error, self.detail, self.headers = status, error, detail, headers


def error_response(status: int, error: str, detail: object = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error body with its status code."""
    return JSONResponse({"error": error, "detail": jsonable_encoder(detail)}, status_code=status, headers=headers)


def _code(status: int) -> str:
    """``not_found`` for 404 and so on."""
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.error, exc.detail, exc.headers)


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return error_response(exc.status_code, _code(exc.status_code), exc.detail, getattr(exc, "headers", None))


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [{"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
                for e in exc.errors()]
    return error_response(422, "invalid_request", problems)


def install_handlers(app: FastAPI) -> None:
    """Make every error of the app a JSON ``{"error", "detail"}`` body."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
