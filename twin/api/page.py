"""The operator's dashboard ``/``, the field units' page ``/unit``, and their static files, served from the
installed package.

The files live in ``twin/api/static/`` (package data). They are read once, when the router is
made, into a fixed table: ``/static/{name}`` serves only the names in that table, so no request
can reach any other file. The page loads nothing from other sites; its Content-Security-Policy
says so to the browser as well (scripts, styles, images and connections from this server only).
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from twin.api.errors import ApiError

STATIC_PACKAGE = "twin.api"
STATIC_FOLDER = "static"
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
               ".ico": "image/x-icon"}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
"""Everything from this server only (``connect-src 'self'`` covers the same host's ws:// in CSP 3)."""
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def static_files() -> dict[str, tuple[bytes, str]]:
    """The dashboard's files by name: (content, media type). Only known file types are served."""
    folder = resources.files(STATIC_PACKAGE).joinpath(STATIC_FOLDER)
    out = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in MEDIA_TYPES:
            out[entry.name] = (entry.read_bytes(), MEDIA_TYPES[suffix])
    return out


PAGES = {"/": "index.html", "/unit": "unit.html"}
"""Path -> the HTML file of the page: the operator's dashboard, a field unit's page (its unit and token come in the
address's fragment, ``/unit#unit=unit-police-01&token=...``, which browsers never send to a server)."""


def page_routes() -> APIRouter:
    """The router of the pages (left out of the OpenAPI schema: they are not an API)."""
    files = static_files()
    for name in PAGES.values():
        if name not in files:
            raise FileNotFoundError(f"the page {name} is missing from {STATIC_PACKAGE}/{STATIC_FOLDER}")
    r = APIRouter(include_in_schema=False)

    def page(name: str):
        def serve_page() -> Response:
            body, media = files[name]
            return Response(body, media_type=media,
                            headers={**HEADERS, "Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer"})

        return serve_page

    for path, name in PAGES.items():
        r.add_api_route(path, page(name), methods=["GET"])

    @r.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in files:
            raise ApiError(404, "not_found", f"no static file {name!r}")
        body, media = files[name]
        return Response(body, media_type=media, headers=HEADERS)

    return r
