"""`/docs` works on a network without internet: every asset the page loads comes from the API."""

from __future__ import annotations

import re

import httpx

from starter.api.app import create_app
from tests.api_harness import without_connections


async def test_the_api_explorer_and_its_assets_come_from_the_api_itself() -> None:
    app = create_app(without_connections)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.local"
    ) as http:
        page = await http.get("/docs")
        assert page.status_code == 200
        loaded = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        loaded += re.findall(r"""url: ?["']([^"']+)["']""", page.text)
        assert loaded, page.text
        assert not [url for url in loaded if re.match(r"^(https?:)?//", url)], loaded
        for url in loaded:
            asset = await http.get(url)
            assert asset.status_code == 200, url
            assert asset.content, url
        script = await http.get("/docs/assets/swagger-ui-bundle.js")
        assert "SwaggerUIBundle" in script.text
        assert (await http.get("/redoc")).status_code == 404  # no packaged assets: not served
        counted = (await http.get("/metrics")).text
    assert 'route="/docs/assets",status="200"' in counted  # by mount point, not by file
    assert "swagger-ui-bundle.js" not in counted
