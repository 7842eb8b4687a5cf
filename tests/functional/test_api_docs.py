"""/docs and /redoc reference only assets the app serves itself (from the fastapi-offline package)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from spymaster.api import create_app
from spymaster.lake import Lake
from spymaster.settings import StorageSettings


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    lake = Lake(StorageSettings(lake_uri=str(tmp_path_factory.mktemp("docs") / "lake")))
    return TestClient(create_app(lake=lake))


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_pages_use_local_assets(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", r.text)
    refs += re.findall(r"""(?:url|spec-url)\s*[:=]\s*['"]([^'"]+)['"]""", r.text)
    assert refs, r.text[:500]
    assert not [u for u in refs if re.match(r"^(https?:)?//", u)], refs
    assets = [u for u in refs if u.startswith("/docs-assets/")]
    assert assets, refs
    for url in assets:
        got = client.get(url)
        assert got.status_code == 200, url
        assert len(got.content) > 1000 or url.endswith(".png"), url
    assert client.get("/openapi.json").status_code == 200
