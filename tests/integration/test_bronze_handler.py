"""The bronze Lambda handler driven by the sample S3 event, against S3 over HTTP (moto server)."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest

from functions.bronze import app
from spymaster.lake import Lake, paths, read_committed
from spymaster.lake.paths import Layer, Product, RawKind
from tests.support import fixture, s3_settings

EVENT = Path(__file__).parents[2] / "events" / "bronze_s3_put.json"


@pytest.mark.s3
def test_s3_put_event_builds_bronze_and_replay_is_idempotent(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the handler configured for s3://spymaster-test/lake and a real fixture landed at the event's key
    lake = Lake(s3_settings(s3_endpoint, "lake"))
    monkeypatch.setattr(app, "_lake", lake)  # the handler's cold-start cache, not boto: S3 is real
    event = json.loads(EVENT.read_text())
    raw = paths.parse_raw_key(urllib.parse.unquote_plus(event["Records"][0]["s3"]["object"]["key"]))
    kind, date = raw.kind, raw.date
    assert kind == RawKind(Product.FUT, "trades")
    lake.put_file(fixture("trades"), paths.raw_file(kind, date))

    # When S3 delivers the event, twice
    first = app.handler(event)
    second = app.handler(event)

    # Then the partition is committed once with the fixture's rows
    assert first["results"][0]["status"] == second["results"][0]["status"] == "committed"
    table = read_committed(lake, Layer.BRONZE, kind.bronze_table, date)
    assert table.num_rows == 4
    assert len(lake.list_files(paths.table_dir(Layer.BRONZE, kind.bronze_table, date))) == 1


@pytest.mark.s3
def test_event_for_other_keys_is_ignored(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "_lake", Lake(s3_settings(s3_endpoint, "lake2")))
    event = {
        "Records": [
            {"s3": {"bucket": {"name": "spymaster-test"}, "object": {"key": "lake2/notes/readme.txt"}}}
        ]
    }
    assert app.handler(event) == {"results": [{"key": "lake2/notes/readme.txt", "status": "ignored"}]}
