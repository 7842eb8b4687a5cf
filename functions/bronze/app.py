"""Lambda: a raw DBN object landed → decode it into its bronze partition.

Thin by design: parse the S3 event, load settings once, call :func:`spymaster.layers.bronze.build`.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from spymaster.errors import BadInputError
from spymaster.lake import Lake, paths
from spymaster.layers import bronze
from spymaster.settings import storage_settings

_lake: Lake | None = None


def _get_lake() -> Lake:
    global _lake  # noqa: PLW0603  # one Lake per container, built at first use (cold start)
    if _lake is None:
        _lake = Lake(storage_settings())
    return _lake


def handler(event: dict[str, Any], context: object = None) -> dict[str, Any]:
    lake = _get_lake()
    results: list[dict[str, Any]] = []
    prefix = lake.root.split("/", 1)[1] + "/" if "/" in lake.root else ""
    for rec in event.get("Records", []):
        key = urllib.parse.unquote_plus(rec["s3"]["object"]["key"])
        rel = key.removeprefix(prefix)
        try:
            raw = paths.parse_raw_key(rel)
        except ValueError:
            results.append({"key": key, "status": "ignored"})
            continue
        try:
            res = bronze.build(lake, raw.kind, raw.date)
            results.append({"key": key, "status": "committed", "rows": res.rows})
        except BadInputError as exc:
            results.append({"key": key, "status": "quarantined", "error": str(exc)})
    return {"results": results}
