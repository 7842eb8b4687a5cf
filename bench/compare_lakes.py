"""Are two lakes the same? Committed tables, the vector table and the API's answers, side by side.

A refactor must not change what is built nor what is answered. Build the same generated days with
the old code and the new one, then::

    # once per lake, with the code that built it on the path
    PYTHONPATH=/tmp/before/common .venv/bin/python bench/compare_lakes.py snapshot /tmp/lake_before /tmp/before.json
    .venv/bin/python bench/compare_lakes.py snapshot /tmp/lake_after /tmp/after.json
    .venv/bin/python bench/compare_lakes.py diff /tmp/before.json /tmp/after.json

``snapshot`` fingerprints, for the first three committed dates, every committed bronze, silver and
gold table's rows (sorted, so file order does not matter), each manifest's ``rows`` and ``stats``,
the index markers and the normalisation statistics; the whole vector table; and the JSON of
``POST /v1/similar`` (by state and by episode id), ``GET /v1/partitions`` and
``GET /v1/days/{date}/signals``, answered in-process by the code on the path. Run ids, commit
times and table versions differ between any two builds and are left out. ``diff`` exits 1 on any
difference and names it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ET = ZoneInfo("America/New_York")
LAYERS = ("bronze", "silver", "gold")
VOLATILE = {"run_id", "committed_at", "files", "inputs", "gold_run", "table_version", "version"}
QUERIES = [("10:00", "PM_HIGH"), ("10:30", "OR_LOW"), ("11:15", "SMA_90"), ("12:00", "EMA_20")]


def _table_digest(table: pa.Table) -> dict[str, Any]:
    """Row count, schema and a hash of the rows sorted by every sortable column."""
    keys = [
        (f.name, "ascending")
        for f in table.schema
        if not (
            pa.types.is_list(f.type) or pa.types.is_large_list(f.type) or pa.types.is_fixed_size_list(f.type)
        )
    ]
    if keys and table.num_rows:
        table = table.take(pc.sort_indices(table, sort_keys=keys))
    h = hashlib.sha256()
    for batch in table.combine_chunks().to_batches():
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as w:
            w.write_batch(batch)
        h.update(sink.getvalue().to_pybytes())
    return {"rows": table.num_rows, "schema": str(table.schema), "sha256": h.hexdigest()}


def _strip(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _strip(v) for k, v in doc.items() if k not in VOLATILE}
    if isinstance(doc, list):
        return [_strip(v) for v in doc]
    return doc


def _tables(root: Path, dates: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for layer in LAYERS:
        for tdir in sorted((root / "_manifests" / layer).iterdir()):
            for d in dates:
                mpath = tdir / f"date={d}.json"
                if not mpath.exists():
                    continue
                m = json.loads(mpath.read_text())
                data = pa.concat_tables([pq.read_table(root / f) for f in m["files"]]) if m["files"] else None
                out[f"{layer}/{tdir.name}/{d}"] = {
                    "manifest": _strip(m),
                    "data": _table_digest(data) if data is not None else None,
                }
    for marker in sorted((root / "_manifests" / "index").glob("date=*.json")):
        out[f"index/{marker.name}"] = _strip(json.loads(marker.read_text()))
    for stats in sorted((root / "gold" / "_stats").glob("*.json")):
        out[f"gold/_stats/{stats.name}"] = json.loads(stats.read_text())
    return out


def _vector_table(root: Path) -> dict[str, Any]:
    import lancedb

    db = lancedb.connect(str(root / "vectors"))
    table = db.open_table("episodes").to_arrow()
    table = table.drop_columns([c for c in table.column_names if c in VOLATILE])
    return _table_digest(table.take(pc.sort_indices(table, sort_keys=[("episode_id", "ascending")])))


def _answers(root: Path, dates: list[str]) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from spymaster.api import ApiSettings, create_app
    from spymaster.lake import Lake
    from spymaster.settings import storage_settings_for

    app = create_app(ApiSettings(), Lake(storage_settings_for(str(root))))
    out: dict[str, Any] = {}
    with TestClient(app) as client:
        out["partitions"] = _strip(client.get("/v1/partitions").json())
        for d in dates[1:]:
            out[f"signals/{d}"] = _strip(client.get(f"/v1/days/{d}/signals").json())
            for t, kind in [*QUERIES, *_episode_states(root, d)]:
                r = client.post("/v1/similar", json={"date": d, "time": t, "level_kind": kind})
                out[f"similar/{d}/{t}/{kind}"] = {"status": r.status_code, "body": _strip(r.json())}
        first = next((v for k, v in out.items() if k.startswith("similar/") and v["status"] == 200), None)
        if first is not None:
            for nb in first["body"]["neighbours"][:3]:
                r = client.post("/v1/similar", json={"episode_id": nb["episode_id"], "k": 20})
                out[f"similar/episode/{nb['episode_id']}"] = {
                    "status": r.status_code,
                    "body": _strip(r.json()),
                }
    return out


def _episode_states(root: Path, date: str, n: int = 8) -> list[tuple[str, str]]:
    """(ET time, level kind) of every ``len/n``-th gold episode of a date: states known to be in a zone."""
    m = json.loads((root / "_manifests" / "gold" / "episodes" / f"date={date}.json").read_text())
    t = pa.concat_tables([pq.read_table(root / f, columns=["ts", "level_kind"]) for f in m["files"]])
    rows = t.to_pylist()
    step = max(1, len(rows) // n)
    return [(r["ts"].astimezone(ET).strftime("%H:%M:%S"), r["level_kind"]) for r in rows[::step]][:n]


def snapshot(lake: Path, out: Path, n_dates: int = 3) -> None:
    dates = sorted(
        p.stem.removeprefix("date=") for p in (lake / "_manifests" / "gold" / "episodes").glob("*.json")
    )
    dates = dates[:n_dates]
    doc = {
        "dates": dates,
        "tables": _tables(lake, dates),
        "vectors": _vector_table(lake),
        "api": _answers(lake, dates),
    }
    out.write_text(json.dumps(doc, indent=1, sort_keys=True, default=str))
    n_ok = sum(1 for k, v in doc["api"].items() if k.startswith("similar/") and v["status"] == 200)
    print(
        f"{lake}: dates {', '.join(dates)}; {len(doc['tables'])} committed partitions and files; "
        f"vector table {doc['vectors']['rows']} rows; {len(doc['api'])} API answers ({n_ok} similar with 200)"
    )


def _walk(a: Any, b: Any, path: str, diffs: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                diffs.append(f"{path}/{k}: only in {'after' if k not in a else 'before'}")
            else:
                _walk(a[k], b[k], f"{path}/{k}", diffs)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _walk(x, y, f"{path}[{i}]", diffs)
    elif a != b:
        diffs.append(f"{path}: {str(a)[:80]} != {str(b)[:80]}")


def diff(before: Path, after: Path) -> int:
    a, b = json.loads(before.read_text()), json.loads(after.read_text())
    diffs: list[str] = []
    _walk(a, b, "", diffs)
    for line in diffs[:50]:
        print(line)
    if diffs:
        print(f"{len(diffs)} difference(s)")
        return 1
    print(
        f"identical: {len(a['tables'])} committed partitions and files over {', '.join(a['dates'])}, "
        f"the vector table ({a['vectors']['rows']} rows, sha256 {a['vectors']['sha256'][:12]}), "
        f"{len(a['api'])} API answers"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("snapshot", help="fingerprint a lake's tables and answers into a JSON file")
    s.add_argument("lake", type=Path)
    s.add_argument("out", type=Path)
    s.add_argument("--dates", type=int, default=3)
    d = sub.add_parser("diff", help="compare two snapshots; exit 1 if they differ")
    d.add_argument("before", type=Path)
    d.add_argument("after", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "snapshot":
        snapshot(args.lake, args.out, args.dates)
        return 0
    return diff(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
