"""The API docs (/docs, /redoc) render in headless chromium with every asset from the app itself:
Swagger UI and ReDoc come from the installed fastapi-offline package, never a CDN."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("path", "rendered"), [("/docs", ".swagger-ui .info .title"), ("/redoc", ".api-info h1")]
)
def test_api_docs_render_offline(browser: Any, app_url: str, path: str, rendered: str) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    requests: list[str] = []
    foreign: list[str] = []
    errors: list[str] = []
    pg.on("requestfinished", lambda r: requests.append(r.url))
    pg.on("pageerror", lambda e: errors.append(str(e)))
    origin = urlsplit(app_url).netloc
    # Anything that is not the app fails, as it would offline.
    pg.route(
        "**/*",
        lambda route: route.continue_() if urlsplit(route.request.url).netloc == origin else route.abort(),
    )
    try:
        pg.goto(f"{app_url}{path}")
        pg.wait_for_selector(rendered, timeout=20_000)
        assert "Spymaster" in (pg.text_content(rendered) or "")
        # and the routes are listed
        pg.wait_for_function("() => document.body.innerText.includes('/v1/similar')", timeout=20_000)
    finally:
        context.close()
    assert not errors, errors
    assert not foreign, foreign
    assert all(urlsplit(u).netloc == origin for u in requests if not u.startswith(("data:", "blob:"))), (
        requests
    )
    assert any("/docs-assets/" in u for u in requests), requests
