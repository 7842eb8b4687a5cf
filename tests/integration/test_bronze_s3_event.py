"""A raw file's S3 event, parsed as the handlers parse it, builds bronze on S3 over HTTP (moto server);
a replay commits nothing new."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from functions.shared import events
from spymaster.lake import Lake, paths, read_committed
from spymaster.lake.paths import Layer, Product, RawKind
from spymaster.layers import bronze
from tests.support import fixture, s3_settings

EVENT = Path(__file__).parents[2] / "events" / "ready_s3_put_fixture_date.json"


def _build(lake: Lake, event: dict[str, object], prefix: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for obj in events.landed_objects(event):
        landed = events.raw_landed(obj, obj.bucket, prefix)
        if landed is None:
            out.append({"key": obj.key, "status": "ignored"})
            continue
        res = bronze.build(lake, landed.raw.kind, landed.raw.date)
        out.append({"key": obj.key, "status": "committed", "rows": res.rows})
    return out


@pytest.mark.s3
def test_s3_put_event_builds_bronze_and_replay_is_idempotent(s3_endpoint: str) -> None:
    # Given a lake at s3://spymaster-test/lake and a real fixture landed at the event's key
    lake = Lake(s3_settings(s3_endpoint, "lake"))
    event = json.loads(EVENT.read_text())
    (obj,) = events.landed_objects(event)
    landed = events.raw_landed(obj, "spymaster-test", "lake/")
    assert landed is not None
    kind, date = landed.raw.kind, landed.raw.date
    assert kind == RawKind(Product.FUT, "trades")
    lake.put_file(fixture("trades"), paths.raw_file(kind, date))

    # When the event is handled twice
    first = _build(lake, event, "lake/")
    second = _build(lake, event, "lake/")

    # Then the partition is committed once with the fixture's rows
    assert first[0]["status"] == second[0]["status"] == "committed"
    table = read_committed(lake, Layer.BRONZE, kind.bronze_table, date)
    assert table.num_rows == 4
    assert len(lake.list_files(paths.table_dir(Layer.BRONZE, kind.bronze_table, date))) == 1


@pytest.mark.s3
def test_event_for_other_keys_is_ignored(s3_endpoint: str) -> None:
    lake = Lake(s3_settings(s3_endpoint, "lake2"))
    event = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "eventTime": "2026-03-10T22:00:00.000Z",
                "s3": {"bucket": {"name": "spymaster-test"}, "object": {"key": "lake2/notes/readme.txt"}},
            }
        ]
    }
    assert _build(lake, event, "lake2/") == [{"key": "lake2/notes/readme.txt", "status": "ignored"}]
