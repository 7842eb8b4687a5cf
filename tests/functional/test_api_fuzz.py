"""Property-based fuzzing of the API from its own OpenAPI schema (schemathesis, in-process ASGI)
over the generated demo lake: whatever the schema allows — and the invalid data schemathesis
derives from it — the answer is never a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from spymaster.api import ApiSettings, create_app
from spymaster.serving import Service
from tests.functional.test_api import demo_lake


class _Deferred:
    """An ASGI app whose target is set later: the schema is read at import time (schemathesis
    parametrizes at collection), the lake only exists once the session fixture has built it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


_app = _Deferred(create_app(ApiSettings(), service=Service(None)))  # same routes, same schema
schema = schemathesis.openapi.from_asgi("/openapi.json", _app)


@pytest.fixture(scope="module", autouse=True)
def _on_the_demo_lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    demo = demo_lake(tmp_path_factory)
    previous = _app.app
    _app.app = create_app(ApiSettings(table_check_seconds=600), demo.lake)
    yield
    _app.app = previous


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any) -> None:
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, response.text)
    assert "Traceback" not in response.text
    case.validate_response(response, checks=[not_a_server_error])
