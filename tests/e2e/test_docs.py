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


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_pages_reference_only_local_assets(app_url: str, path: str) -> None:
    import re

    import httpx

    r = httpx.get(f"{app_url}{path}", timeout=30)
    assert r.status_code == 200
    assert "default-src 'self'" in r.headers["content-security-policy"]
    refs = re.findall(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']""", r.text)
    refs += re.findall(r"""url:\s*['"]([^'"]+)['"]""", r.text)
    assert refs, r.text[:500]
    assert not [u for u in refs if re.match(r"^(https?:)?//", u)], refs
    assets = [u for u in refs if u.startswith("/docs-assets/")]
    assert assets, refs
    for url in assets:
        got = httpx.get(f"{app_url}{url}", timeout=30)
        assert got.status_code == 200, url
        assert len(got.content) > 1000, url
