"""`/docs`: the API explorer (Swagger UI) served with its own assets, for closed networks.

FastAPI's default page loads Swagger UI from a CDN, which a hospital network often cannot
reach: the page stays blank. Here the script, stylesheet and icon come from the
`swagger-ui-bundle-v2` package, through the API itself (`/docs/assets/...`). ReDoc, which
has no packaged assets, is not served.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/docs/assets"


def install(app: FastAPI) -> None:
    """Serve `/docs` and its assets; the OpenAPI schema stays at `app.openapi_url`."""
    app.mount(ASSETS, StaticFiles(directory=swagger_ui_path), name="swagger-ui-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} (API explorer)",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )
