"""Quarantine: bad raw files moved aside with a machine-readable reason, so nothing is lost."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from spymaster.errors import SpymasterError
from spymaster.lake import Lake, paths
from spymaster.lake.paths import RawKind


@dataclass(frozen=True)
class Quarantined:
    file: str
    original: str
    date: str
    product: str
    schema: str
    error: str
    reason: str
    at: str


def put(lake: Lake, key: str, kind: RawKind, date: dt.date, exc: SpymasterError) -> str:
    """Move ``key`` under ``quarantine/`` and record why; returns the quarantined key."""
    name = key.rsplit("/", 1)[-1]
    target = paths.quarantine_file(kind, date, name)
    record: dict[str, Any] = {
        "file": target,
        "original": key,
        "date": date.isoformat(),
        "product": kind.product.value,
        "schema": kind.schema,
        "error": type(exc).__name__,
        "reason": exc.message,
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    # Reason first: a quarantined file is never without its explanation.
    lake.write_json(paths.quarantine_reason(target), record)
    if lake.exists(key):
        lake.move(key, target)
    return target


def list_all(lake: Lake) -> list[Quarantined]:
    out = []
    for f in lake.list_files(paths.QUARANTINE_ROOT):
        if f.endswith(".reason.json"):
            out.append(Quarantined(**lake.read_json(f)))
    return sorted(out, key=lambda q: (q.date, q.product, q.schema))
