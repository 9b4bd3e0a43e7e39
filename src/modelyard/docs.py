"""The API's documentation pages, served with no internet: Swagger UI at ``/docs``, ReDoc at ``/redoc``.

Their JavaScript and CSS are vendored in ``modelyard/static/`` (versions and licences in its README) and
served from ``/static``, so the pages render on a machine that cannot reach a CDN. ``/`` sends people
to ``/docs``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
SWAGGER_UI_VERSION = "5.36.0"
REDOC_VERSION = "2.5.4"
# The pages may load only from this server: ReDoc's sidebar links an image on its vendor's CDN, which
# the browser then does not fetch (the image hides itself when it fails to load).
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)


def _local_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CSP
    return page


def install_docs(app: FastAPI) -> None:
    """Mount ``/static`` and add ``/``, ``/docs``, ``/docs/oauth2-redirect`` and ``/redoc`` to ``app``."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    openapi_url = app.openapi_url or "/openapi.json"
    oauth_redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        """Swagger UI over the OpenAPI document, from the vendored assets."""
        page = get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=oauth_redirect,
            swagger_js_url=f"/static/swagger-ui/swagger-ui-bundle.js?v={SWAGGER_UI_VERSION}",
            swagger_css_url=f"/static/swagger-ui/swagger-ui.css?v={SWAGGER_UI_VERSION}",
            swagger_favicon_url="/static/swagger-ui/favicon-32x32.png",
            # the online validator badge would call validator.swagger.io
            # a filter box by tag: Swagger UI draws only the operations near the screen in a list this
            # long, so the browser's find-in-page does not see the rest
            swagger_ui_parameters={"validatorUrl": None, "filter": True},
        )
        return _local_only(page)

    @app.get(oauth_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        """The page Swagger UI's OAuth2 flow returns to."""
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        """ReDoc over the OpenAPI document, from the vendored bundle, without web fonts."""
        page = get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"/static/redoc/redoc.standalone.js?v={REDOC_VERSION}",
            redoc_favicon_url="/static/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )
        return _local_only(page)
