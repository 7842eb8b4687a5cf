"""The API refuses what it cannot answer well (issue 12 #12–#15): extreme values and types the
docs do not allow are 422s with a reason, oversized bodies 413 before they are read, and
``/signals`` work per request is bounded (fixed k values, one computation at a time)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from spymaster import vectors
from spymaster.api import ApiSettings, create_app
from spymaster.serving import Service
from spymaster.serving.query import SIGNAL_CACHE, SIGNAL_KS
from tests.functional.test_api import Demo, demo_lake

V = [0.1] * vectors.VECTOR_DIM
PART = {"level_kind": "PM_HIGH", "direction": "UP", "time_bucket": 0}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(ApiSettings(), service=Service(None))) as c:
        yield c


def _reason(c: TestClient, body: dict[str, Any]) -> str:
    r = c.post("/v1/similar", json=body)
    assert r.status_code == 422, (body, r.status_code, r.text)
    detail: str = r.json()["detail"]
    return detail


# -- #12 extreme but finite values ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"vector": [1e19, *V[1:]], "partition": PART, "as_of": "2026-03-05"}, "vector.0"),
        ({"vector": [-1e300, *V[1:]], "partition": PART, "as_of": "2026-03-05"}, "vector.0"),
        ({"episode_id": "x", "weights": {"flow": 1e39}}, "weights.flow"),
        ({"episode_id": "x", "weights": {"flow": 1e-45}}, "a weight is 0 or between"),
        ({"vector": V, "partition": PART, "as_of": "9999-12-31"}, "as_of: 9999-12-31 is outside"),
        ({"date": "0001-01-01", "time": "10:00", "level_kind": "PM_HIGH"}, "date: 0001-01-01 is outside"),
    ],
)
def test_extreme_values_are_422_with_a_reason(client: TestClient, body: dict[str, Any], says: str) -> None:
    assert says in _reason(client, body)


def test_plausible_values_still_pass(client: TestClient) -> None:
    ok = {"vector": V, "partition": PART, "as_of": "2026-03-05", "weights": {"flow": 0, "dealer": 1e-6}}
    assert client.post("/v1/similar", json=ok).status_code == 200


# -- #15 strict types, and an OpenAPI that says what is enforced -------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"episode_id": "x", "k": "50"}, "k"),
        ({"episode_id": "x", "k": True}, "k"),
        ({"episode_id": "x", "k": 50.0}, "k"),
        ({"episode_id": "x", "horizon": 8.0}, "horizon"),
        ({"episode_id": "x", "horizon": True}, "horizon"),
        ({"episode_id": "x", "max_per_day": "2"}, "max_per_day"),
        ({"vector": V, "partition": {**PART, "time_bucket": True}, "as_of": "2026-03-05"}, "time_bucket"),
    ],
)
def test_loose_types_are_refused(client: TestClient, body: dict[str, Any], field: str) -> None:
    assert field in _reason(client, body)


def test_openapi_states_the_limits_the_server_enforces(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    req = schema["components"]["schemas"]["SimilarRequest"]
    props = req["properties"]
    assert props["k"]["maximum"] == 500
    assert props["k"]["minimum"] == 1
    date_schemas = [s for s in props["date"]["anyOf"] if s.get("type") == "string"]
    assert date_schemas[0]["pattern"] == r"^\d{4}-\d{2}-\d{2}$"
    modes = [sorted(m["required"]) for m in req["oneOf"]]
    assert modes == [["episode_id"], ["date", "level_kind", "time"], ["as_of", "partition", "vector"]]
    signals = schema["paths"]["/v1/days/{date}/signals"]["get"]["parameters"]
    (k,) = [p for p in signals if p["name"] == "k"]
    assert k["schema"]["enum"] == list(SIGNAL_KS)


# -- #13 the body limit --------------------------------------------------------------------------------


def test_a_huge_body_is_413_before_it_is_read(client: TestClient) -> None:
    big = b"[" + b"1.0," * 10_000_000 + b"1]"  # 40 MB of JSON array
    r = client.post("/v1/similar", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert "larger than" in r.json()["detail"]


def test_a_chunked_body_is_cut_off_at_the_limit(client: TestClient) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(1000):
            sent += 40_000
            yield b"1.0," * 10_000

    r = client.post("/v1/similar", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_the_limit_is_a_setting() -> None:
    body = {"vector": [0.123456789] * vectors.VECTOR_DIM, "partition": PART, "as_of": "2026-03-05"}
    size = len(json.dumps(body))
    assert size > 1024
    with TestClient(create_app(ApiSettings(max_body_bytes=1024), service=Service(None))) as c:
        assert c.post("/v1/similar", json=body).status_code == 413
    with TestClient(create_app(ApiSettings(max_body_bytes=size), service=Service(None))) as c:
        assert c.post("/v1/similar", json=body).status_code == 200


# -- #14 bounded signal work -----------------------------------------------------------------------


class _Counting(Service):
    """The real service, counting how many signal computations run at once."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.running = 0
        self.peak = 0
        self.calls = 0
        self._m = threading.Lock()

    def _compute_signals(self, *a: Any, **kw: Any) -> dict[str, Any]:
        with self._m:
            self.running += 1
            self.calls += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(0.05)
            return super()._compute_signals(*a, **kw)
        finally:
            with self._m:
                self.running -= 1


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return demo_lake(tmp_path_factory)


def test_signals_take_fixed_k_values_and_compute_one_at_a_time(demo: Demo) -> None:
    svc = _Counting(demo.lake)
    date = demo.dates[-1]
    with TestClient(create_app(ApiSettings(), service=svc)) as c:
        r = c.get(f"/v1/days/{date}/signals", params={"k": 37})
        assert r.status_code == 422
        assert "one of 10, 20, 50, 100, 200, 500" in r.json()["detail"]
        # Ten clients asking for every allowed k and horizon at once
        jobs = [(k, h) for k in SIGNAL_KS for h in (2, 4, 8, 20)] * 2
        with ThreadPoolExecutor(10) as pool:
            codes = list(
                pool.map(
                    lambda kh: (
                        c.get(f"/v1/days/{date}/signals", params={"k": kh[0], "horizon": kh[1]}).status_code
                    ),
                    jobs,
                )
            )
        assert set(codes) == {200}
    # never more than one computation at a time, each (k, horizon) computed once, the cache bounded
    assert svc.peak == 1
    assert svc.calls == len(SIGNAL_KS) * 4
    assert len(svc._signals) <= SIGNAL_CACHE
