"""Bronze decode vs ``DBNStore.to_parquet`` on the same full-scale generated day.

Each measurement runs in its own subprocess so peak RSS (``ru_maxrss``) belongs to it alone.
Prints records/s and peak RSS side by side with their ratio, and appends a JSON line to
``bench/out/bronze.jsonl``.

    python bench/bench_bronze.py --scale 1.0
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

OUT = Path(__file__).parent / "out"


def _child(mode: str, src: str, dst: str) -> None:
    """Run one conversion and print its wall seconds and record count."""
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    if mode == "spymaster":
        import pyarrow.parquet as pq

        from spymaster.raw import dbnread

        info = dbnread.inspect(src)
        assert info.schema is not None
        rows = 0
        with pq.ParquetWriter(
            dst, dbnread.arrow_schema(info.schema), compression="zstd", compression_level=1
        ) as w:
            for batch in dbnread.decode(src):
                w.write_batch(batch)
                rows += batch.num_rows
    else:
        import databento as db
        import pyarrow.parquet as pq

        db.DBNStore.from_file(src).to_parquet(dst)
        rows = pq.ParquetFile(dst).metadata.num_rows
    secs = time.perf_counter() - t0
    peak = _vm_hwm()
    print(json.dumps({"secs": secs, "rows": rows, "peak_rss": peak}))


def _vm_hwm() -> int:
    """Peak RSS of this process image. ``ru_maxrss`` survives exec on Linux and would report the
    (large) parent that spawned us; ``VmHWM`` belongs to this image alone."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _measure(mode: str, src: Path, work: Path) -> dict[str, float]:
    dst = work / f"{mode}-{src.name}.parquet"
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(src), str(dst)],
        check=True,
        capture_output=True,
        text=True,
    )
    res: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    dst.unlink(missing_ok=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--date", default="2026-03-05")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--child", nargs=3, metavar=("MODE", "SRC", "DST"))
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return

    from spymaster.lake.paths import Product, RawKind
    from spymaster.synth import generate_day

    date = dt.date.fromisoformat(args.date)
    with tempfile.TemporaryDirectory(prefix="bench-bronze-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        day = generate_day(date, scale=args.scale, seed=args.seed)
        gen_secs = time.perf_counter() - t0
        print(f"generated {date} at scale {args.scale} in {gen_secs:.1f} s")
        results = []
        for schema in ("mbp-10", "trades"):
            src = work / f"{schema}.dbn.zst"
            src.write_bytes(day.files[RawKind(Product.FUT, schema)])
            del_size = src.stat().st_size
            ours = _measure("spymaster", src, work)
            base = _measure("to_parquet", src, work)
            assert ours["rows"] == base["rows"], (ours, base)
            row = {
                "schema": schema,
                "records": int(ours["rows"]),
                "file_mb": round(del_size / 1e6, 1),
                "ours_rec_s": ours["rows"] / ours["secs"],
                "base_rec_s": base["rows"] / base["secs"],
                "ours_rss_gb": ours["peak_rss"] / 1e9,
                "base_rss_gb": base["peak_rss"] / 1e9,
            }
            results.append(row)
        del day

    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    hdr = f"{'schema':<8}{'records':>11}{'MB zst':>8} | {'spymaster':>12}{'to_parquet':>12}{'ratio':>7} | {'RSS ours':>9}{'RSS base':>9}"
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        print(
            f"{r['schema']:<8}{r['records']:>11,}{r['file_mb']:>8} | "
            f"{r['ours_rec_s'] / 1e6:>9.2f} M/s{r['base_rec_s'] / 1e6:>9.2f} M/s"
            f"{r['ours_rec_s'] / r['base_rec_s']:>6.1f}x | "
            f"{r['ours_rss_gb']:>7.2f}GB{r['base_rss_gb']:>7.2f}GB"
        )
    OUT.mkdir(exist_ok=True)
    with open(OUT / "bronze.jsonl", "a") as f:
        f.write(
            json.dumps({"at": dt.datetime.now(dt.UTC).isoformat(), "scale": args.scale, "results": results})
            + "\n"
        )


if __name__ == "__main__":
    main()
