"""The API Lambda's cold start pulls only what its query path needs: a fresh process imports the
handler and answers its first query without the vector store, SQL engine or exchange-calendar
library (the indexer's snapshot carries the vectors and the trading days)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from spymaster.lake import Lake, committed_dates, paths, read_committed
from spymaster.lake.paths import Layer
from spymaster.sessions import ET

ROOT = Path(__file__).parents[2]
HEAVY = ("lancedb", "duckdb", "pandas_market_calendars", "exchange_calendars", "aws_lambda_powertools")
"""Modules the query path must not import (each costs a large share of a 1.5 s cold start)."""

_CHILD = """
import json, sys
from pathlib import Path
from functions.api.app import handler
heavy = {heavy!r}
at_import = sorted(m for m in heavy if m in sys.modules)
event = json.loads(Path("events/api_http_similar.json").read_text())
event["body"], event["isBase64Encoded"] = {body!r}, False
res = handler(event, None)
print(json.dumps({{"status": res["statusCode"], "at_import": at_import,
                  "at_answer": sorted(m for m in heavy if m in sys.modules)}}))
"""


def _first_answer(lake: Lake) -> dict[str, object]:
    last = committed_dates(lake, Layer.GOLD, paths.EPISODES_TABLE)[-1]
    ep = read_committed(lake, Layer.GOLD, paths.EPISODES_TABLE, last).slice(0, 1).to_pylist()[0]
    body = json.dumps(
        {
            "date": last.isoformat(),
            "time": ep["ts"].astimezone(ET).strftime("%H:%M:%S"),
            "level_kind": ep["level_kind"],
            "k": 20,
        }
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPYMASTER_")}
    env["SPYMASTER_LAKE_URI"] = lake.settings.lake_uri
    out = subprocess.run(
        [sys.executable, "-c", _CHILD.format(heavy=HEAVY, body=body)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    got: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return got


def test_the_api_imports_and_answers_without_the_heavy_modules(built_lake: Lake) -> None:
    # Given a lake whose indexer wrote the snapshot (vectors and trading days)
    assert built_lake.exists(paths.VECTOR_SNAPSHOT)
    # When a fresh process imports the handler and answers one query
    got = _first_answer(built_lake)
    # Then it answered, and neither the import nor the answer loaded a heavy module
    assert got["status"] == 200, got
    assert got["at_import"] == [], got
    assert got["at_answer"] == [], got
