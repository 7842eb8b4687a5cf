"""Gold and the vector table over N generated days (issue 4's benchmark).

Prints episodes per day, gold seconds per day, index upsert seconds per date, the table's size on
disk, and the design comparison: one table with partition columns + bitmap indexes (what we ship)
versus one LanceDB table per partition (60 tables), on the same rows:
  * upsert of one date (merge_insert) into each layout,
  * loading one partition into memory (what the API does once per table version),
  * a LanceDB prefiltered exact top-50 query inside one partition.

    python bench/bench_gold_index.py --days 20 --scale 0.05
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow.compute as pc


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--days", type=int, default=20)
    ap.add_argument("--scale", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--start", default="2026-02-02")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    import lancedb

    from spymaster.lake import Lake, paths
    from spymaster.layers import bronze, gold, index, silver
    from spymaster.settings import StorageSettings
    from spymaster.synth import generate

    with tempfile.TemporaryDirectory(prefix="bench-gold-") as tmp:
        lake = Lake(StorageSettings(lake_uri=tmp))
        dates = generate(
            lake,
            dt.date.fromisoformat(args.start),
            args.days,
            scale=args.scale,
            seed=args.seed,
            progress=False,
        )
        for d in dates:
            for k in paths.RAW_KINDS:
                bronze.build(lake, k, d)
            silver.build(lake, d)
        gold_s, n_ep = [], []
        for d in dates:
            t0 = time.perf_counter()
            n_ep.append(gold.build(lake, d).num_rows)
            gold_s.append(time.perf_counter() - t0)
        idx_s = []
        for d in dates:
            t0 = time.perf_counter()
            index.index_date(lake, d)
            idx_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        index.ensure_indexes(lake)
        ensure_s = time.perf_counter() - t0
        size = _du(Path(tmp) / paths.VECTORS_DIR)
        rows = index.read_all(lake)
        total = rows.num_rows

        # The alternative: one table per partition, same rows.
        alt = lancedb.connect(str(Path(tmp) / "alt"))
        parts = sorted(set(rows.column("partition").to_pylist()))
        for p in parts:
            sub = rows.filter(pc.equal(rows.column("partition"), p))
            alt.create_table(p.replace("|", "_"), data=sub)
        last = dates[-1]
        last_rows = rows.filter(pc.equal(rows.column("date"), last))
        one = index.open_table(lake)
        t0 = time.perf_counter()
        one.merge_insert("episode_id").when_matched_update_all().when_not_matched_insert_all().execute(
            last_rows
        )
        up_one = time.perf_counter() - t0
        t0 = time.perf_counter()
        for p in sorted(set(last_rows.column("partition").to_pylist())):
            sub = last_rows.filter(pc.equal(last_rows.column("partition"), p))
            alt.open_table(p.replace("|", "_")).merge_insert(
                "episode_id"
            ).when_matched_update_all().when_not_matched_insert_all().execute(sub)
        up_alt = time.perf_counter() - t0

        biggest = max(parts, key=lambda p: rows.filter(pc.equal(rows.column("partition"), p)).num_rows)
        load_one, load_alt, q_one, q_alt = [], [], [], []
        qv = np.asarray(
            rows.filter(pc.equal(rows.column("partition"), biggest)).column("vector")[0].as_py(),
            dtype=np.float32,
        )
        for _ in range(7):
            t0 = time.perf_counter()
            one.search().where(f"partition = '{biggest}'").select(["episode_id", "vector"]).limit(
                None
            ).to_arrow()
            load_one.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            alt.open_table(biggest.replace("|", "_")).to_arrow()
            load_alt.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            one.search(qv).where(f"partition = '{biggest}'", prefilter=True).limit(50).to_arrow()
            q_one.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            alt.open_table(biggest.replace("|", "_")).search(qv).limit(50).to_arrow()
            q_alt.append(time.perf_counter() - t0)
        n_big = rows.filter(pc.equal(rows.column("partition"), biggest)).num_rows

    ms = lambda xs: 1000 * statistics.median(xs)  # noqa: E731
    print(f"{len(dates)} days at scale {args.scale}: {total:,} episodes in {len(parts)} partitions")
    print(f"episodes/day: median {statistics.median(n_ep):.0f} (min {min(n_ep)}, max {max(n_ep)})")
    print(f"gold s/day:   median {statistics.median(gold_s):.2f} s")
    print(
        f"index upsert: median {statistics.median(idx_s):.2f} s per date; scalar indexes + compaction {ensure_s:.2f} s"
    )
    print(f"table size on disk: {size / 1e6:.1f} MB ({size / max(total, 1):.0f} B per episode)")
    print()
    print(f"{'layout':<34}{'upsert 1 date':>14}{'load partition':>16}{'top-50 query':>14}")
    print(
        f"{'one table + partition columns':<34}{up_one * 1000:>11.0f} ms{ms(load_one):>13.1f} ms{ms(q_one):>11.1f} ms"
    )
    print(
        f"{'one table per partition (60)':<34}{up_alt * 1000:>11.0f} ms{ms(load_alt):>13.1f} ms{ms(q_alt):>11.1f} ms"
    )
    print(f"(largest partition {biggest}: {n_big} rows)")


if __name__ == "__main__":
    main()
