"""JSON errors: every failure is ``{"error": "<code>", "detail": ...}`` with the right status code.

`install_handlers` covers the errors a route or FastAPI raises (`ApiError`, Starlette's
``HTTPException`` for 404 and 405, request validation), and `InternalErrors` turns any other
exception into a JSON 500 with one log line (no traceback in the body). `TrustedHosts` is
Starlette's Host-header check with a JSON 400 instead of its plain-text one.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Sequence
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


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


def _http_response(exc: StarletteHTTPException) -> JSONResponse:
    return error_response(exc.status_code, _code(exc.status_code), exc.detail, getattr(exc, "headers", None))


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return _http_response(exc)


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [{"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
                for e in exc.errors()]
    return error_response(422, "invalid_request", problems)


def _one_line(exc: BaseException) -> str:
    """``Type: message (file:line in function)`` of the innermost frame, on one line."""
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        f = frames[-1]
        where = f" ({f.filename}:{f.lineno} in {f.name})"
    return f"{type(exc).__name__}: {str(exc)!r}{where}"


class InternalErrors:
    """ASGI middleware: an exception no handler took becomes a JSON 500 and one ERROR log line.

    The body says ``internal_error`` and an incident number that the log line repeats; it never
    carries the traceback or the exception's text. The exception is not raised further (Starlette's
    own error middleware would re-raise it, and the server would log the traceback a second time).
    A response already under way cannot be replaced: then the exception goes on to the server.
    Starlette ``HTTPException`` that reach here (from outside a route) get their own JSON error.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if started:
                raise
            if isinstance(exc, StarletteHTTPException):
                response = _http_response(exc)
            else:
                incident = uuid.uuid4().hex[:12]
                log.error("500 internal_error, incident %s, on %s %r: %s", incident, scope.get("method"),
                          scope.get("path"), _one_line(exc))
                response = error_response(500, "internal_error",
                                          f"an unexpected error (incident {incident}); the server's log has it")
            await response(scope, receive, send)


class _Gate:
    """The ``send`` handed to Starlette's Host check: swallows its own (plain-text) refusal and remembers
    whether the request was let through."""

    def __init__(self, send: Send) -> None:
        self.send, self.admitted = send, False

    async def __call__(self, _message: Message) -> None:
        """Starlette's refusal (only that reaches here: an admitted request writes to ``self.send``)."""


class TrustedHosts:
    """Starlette's `TrustedHostMiddleware` (its Host parsing and matching) with a JSON refusal:
    400 ``{"error": "invalid_host", ...}``, on HTTP and on a WebSocket handshake alike."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.check = TrustedHostMiddleware(self._admit, allowed_hosts=list(allowed_hosts), www_redirect=False)

    async def _admit(self, scope: Scope, receive: Receive, gate: _Gate) -> None:
        gate.admitted = True
        await self.app(scope, receive, gate.send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        gate = _Gate(send)
        await self.check(scope, receive, gate)
        if not gate.admitted:
            host = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"), None)
            detail = ("no Host header" if host is None else
                      f"the Host header {host[:100]!r} is not one this server answers to")
            await error_response(400, "invalid_host", detail)(scope, receive, send)


def install_handlers(app: FastAPI) -> None:
    """Make every error of the app a JSON ``{"error", "detail"}`` body (call it before adding other
    middleware, so that `InternalErrors` sits inside CORS and the Host check)."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(InternalErrors)
