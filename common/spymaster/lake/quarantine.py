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
    resolved: str = ""
    """Set once the date's bronze was committed from a good file: the entry is history, not a problem."""


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


def list_all(lake: Lake, *, current: bool = False) -> list[Quarantined]:
    """Every quarantine record; with ``current``, only those not yet resolved by a good file."""
    out = []
    for f in lake.list_files(paths.QUARANTINE_ROOT):
        if f.endswith(".reason.json"):
            q = Quarantined(**lake.read_json(f))
            if not (current and q.resolved):
                out.append(q)
    return sorted(out, key=lambda q: (q.date, q.product, q.schema))


def resolve(lake: Lake, kind: RawKind, date: dt.date, run_id: str) -> int:
    """Mark a (kind, date)'s quarantine records resolved by bronze run ``run_id``; returns how many.

    The quarantined files stay (nothing is lost); ``status`` stops listing them as problems.
    """
    prefix = paths.quarantine_file(kind, date, "")
    n = 0
    for f in lake.list_files(prefix.rstrip("/")):
        if f.endswith(".reason.json"):
            rec = lake.read_json(f)
            if not rec.get("resolved"):
                rec["resolved"] = f"bronze run {run_id}"
                lake.write_json(f, rec)
                n += 1
    return n
