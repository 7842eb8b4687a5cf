"""The API Lambda handler (Mangum) driven by the sample API Gateway HTTP API v2.0 events, against
the generated demo lake on S3 over HTTP (moto server), configured through the environment the
handler reads at import — as in Lambda."""

from __future__ import annotations

import copy
import datetime as dt
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from spymaster import sessions
from spymaster.api import ApiSettings
from spymaster.lake import Lake
from spymaster.settings import storage_settings
from tests.functional.test_api import copy_lake_to_s3, demo_lake

EVENTS = Path(__file__).parents[2] / "events"


def _event(name: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return out


@pytest.fixture(scope="module")
def s3_demo(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> tuple[Lake, dict[str, Any]]:
    """The demo lake copied to S3, and an episode of its second-to-last date (earlier dates exist)."""
    demo = demo_lake(tmp_path_factory)
    lake = copy_lake_to_s3(demo.lake, s3_endpoint)
    rows = demo.episodes.drop(["vector"]).to_pylist()
    target = demo.dates[-2]
    ep = next(r for r in rows if r["date"] == target and r["anchor_reason"] == "BAR_CLOSE")
    return lake, ep


@pytest.fixture
def handler_module(
    s3_demo: tuple[Lake, dict[str, Any]], s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModuleType]:
    """``functions.api.app`` imported with the Lambda's environment pointing at the S3 lake."""
    lake, _ = s3_demo
    monkeypatch.setenv("SPYMASTER_LAKE_URI", lake.uri)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("SPYMASTER_API_KEY", raising=False)
    storage_settings.cache_clear()
    try:
        if "functions.api.app" in sys.modules:
            module = importlib.reload(sys.modules["functions.api.app"])
        else:
            module = importlib.import_module("functions.api.app")
        yield module
    finally:
        storage_settings.cache_clear()


def _pointed_at(event: dict[str, Any], ep: dict[str, Any]) -> dict[str, Any]:
    """The sample event with its query moved onto an anchor of the generated lake (the generator's
    days are synthetic, so the sample's own date/time/level need not be an episode there)."""
    out = copy.deepcopy(event)
    body = json.loads(out["body"])
    body["date"] = ep["date"].isoformat()
    body["time"] = ep["ts"].astimezone(sessions.ET).strftime("%H:%M")
    body["level_kind"] = ep["level_kind"]
    out["body"] = json.dumps(body)
    out["headers"]["content-length"] = str(len(out["body"]))
    return out


@pytest.mark.s3
def test_similar_event_answers_with_neighbours(
    handler_module: ModuleType, s3_demo: tuple[Lake, dict[str, Any]]
) -> None:
    _, ep = s3_demo
    event = _pointed_at(_event("api_http_similar.json"), ep)
    res = handler_module.handler(event, None)
    assert res["statusCode"] == 200, res["body"]
    assert res["headers"]["content-type"] == "application/json"
    body = json.loads(res["body"])
    assert body["query"]["episode_id"] == ep["episode_id"]
    assert body["query"]["as_of"] == ep["date"].isoformat()
    assert 0 < len(body["neighbours"]) <= json.loads(event["body"])["k"]
    assert all(dt.date.fromisoformat(n["date"]) < ep["date"] for n in body["neighbours"])
    assert sum(body["distribution"]["p"].values()) == pytest.approx(1.0)

    health = handler_module.handler(_event("api_http_health.json"), None)
    assert health["statusCode"] == 200
    assert json.loads(health["body"])["episodes"] > 0


@pytest.mark.s3
def test_errors_come_back_as_json_through_the_gateway(
    handler_module: ModuleType, s3_demo: tuple[Lake, dict[str, Any]]
) -> None:
    event = _event("api_http_similar.json")
    event["body"] = json.dumps({"date": "2026-02-30", "time": "10:00", "level_kind": "PM_HIGH"})
    res = handler_module.handler(event, None)
    assert res["statusCode"] == 422
    assert json.loads(res["body"]) == {"detail": "date: 2026-02-30 is not a calendar date"}
    # an API key configured in the Lambda's settings guards /v1 but not /health
    lake, ep = s3_demo
    guarded = handler_module.make_handler(ApiSettings(api_key="k-123"), lake)
    event = _pointed_at(_event("api_http_similar.json"), ep)
    assert guarded(event, None)["statusCode"] == 401
    event["headers"]["x-api-key"] = "k-123"
    assert guarded(event, None)["statusCode"] == 200
    assert guarded(_event("api_http_health.json"), None)["statusCode"] == 200
