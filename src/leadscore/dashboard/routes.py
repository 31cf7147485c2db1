"""Serve the command center page, its vendored assets and the API docs, all from the package:
the dashboard and /docs work offline, with no CDN and no build step."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from starlette.staticfiles import StaticFiles

#: The page, its modules, its stylesheet and the vendored libraries.
STATIC_DIR: Final = Path(__file__).parent / "static"
#: Where the static directory is mounted; the page names its assets under it.
STATIC_PATH: Final = "/dashboard/static"
SWAGGER: Final = f"{STATIC_PATH}/vendor/swagger-ui"
#: The page talks to its own server only (API and WebSocket); nothing runs inline.
PAGE_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
#: The page itself is revalidated on every load, so a new release is picked up at once.
PAGE_HEADERS: Final = {
    "Content-Security-Policy": PAGE_POLICY,
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(tags=["dashboard"], include_in_schema=False)


def static_files() -> StaticFiles:
    """The package's static directory as an ASGI app (mounted by the app factory)."""
    return StaticFiles(directory=STATIC_DIR)


@router.get("/", response_class=FileResponse)
@router.get("/dashboard", response_class=FileResponse)
async def dashboard() -> FileResponse:
    """The command center page; it signs in and reads everything through the public API."""
    return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)


@router.get("/docs", response_class=HTMLResponse)
async def docs(request: Request) -> HTMLResponse:
    """Swagger UI for the OpenAPI schema, with its script and stylesheet from the package."""
    app = request.app
    return get_swagger_ui_html(
        openapi_url=app.openapi_url,
        title=f"{app.title} – API docs",
        swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER}/swagger-ui.css",
        swagger_favicon_url=f"{STATIC_PATH}/favicon.svg",
    )
