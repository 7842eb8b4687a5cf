"""Bronze vs ``DBNStore.to_parquet`` on the same full-scale generated day, and the levers behind it.

Each measurement runs in its own subprocess, so peak RSS (``VmHWM``) belongs to it alone; imports
are done before the clock starts in both, and so is bronze's exchange calendar (imported and built
once per process when a date is first asked about; its time is printed, with the ratio the first
file of a process would see). ``bronze.build`` is the shipped path on a local lake
(inspect, placement check, screening, decode, parallel Parquet writers, commit); next to it,
decode alone (records to Arrow batches, nothing written) and write alone (the decoded batches
held in memory, then written by one writer) show where the remaining time goes. The levers
section writes the same batches with one option changed at a time, and reads silver's columns
back from each file (the downstream cost of a codec). Appends a JSON line to
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
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "out"
DATE = dt.date(2026, 3, 5)


def _vm_hwm() -> int:
    """Peak RSS of this process image. ``ru_maxrss`` survives exec on Linux and would report the
    (large) parent that spawned us; ``VmHWM`` belongs to this image alone."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child(mode: str, schema: str, src: str, work: str) -> None:
    """Run one measurement and print its wall seconds, record count and peak RSS as JSON."""
    warnings.simplefilter("ignore")
    import pyarrow as pa
    import pyarrow.parquet as pq

    from spymaster import sessions
    from spymaster.lake import Lake, paths
    from spymaster.lake.paths import Layer, Product, RawKind
    from spymaster.layers import bronze
    from spymaster.raw import dbnread
    from spymaster.settings import StorageSettings

    extra: dict[str, Any] = {}
    cpu0 = time.process_time()
    if mode == "to_parquet":
        import databento as db

        dst = Path(work) / "base.parquet"
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        db.DBNStore.from_file(src).to_parquet(dst)
        secs = time.perf_counter() - t0
        rows = pq.ParquetFile(dst).metadata.num_rows
        extra["mb"] = dst.stat().st_size / 1e6
    elif mode == "bronze":
        kind = RawKind(Product.FUT, schema)
        lake = Lake(StorageSettings(lake_uri=str(Path(work) / "lake")))
        key = paths.raw_file(kind, DATE)
        Path(lake.path(key)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, lake.path(key))
        # The exchange calendar is imported and built once per process, when a date is first asked
        # about (a per-date job pays it once for all its files): outside the clock like the imports,
        # and printed, so the first file of a process is bronze's time plus this.
        t0 = time.perf_counter()
        sessions.globex_session(DATE)
        extra["calendar"] = time.perf_counter() - t0
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        res = bronze.build(lake, kind, DATE)
        secs = time.perf_counter() - t0
        rows = res.rows
        extra["mb"] = sum(Path(lake.path(f)).stat().st_size for f in res.manifest.files) / 1e6
        extra["files"] = len(res.manifest.files)
        del Layer
    elif mode == "decode":
        t0 = time.perf_counter()
        rows = sum(b.num_rows for b in dbnread.decode(src))
        secs = time.perf_counter() - t0
    else:  # write, or a lever "write:<its index in LEVERS>"
        batches = list(dbnread.decode(src))
        schema_ = batches[0].schema
        opts = bronze.PARQUET_OPTIONS(schema_)
        if mode.startswith("write:"):
            change = dict(LEVERS[int(mode[len("write:") :])][1])
            groups = change.pop("_rows_per_group", None)
            opts = _lever_options(schema_, opts, change)
            if groups:
                table = pa.Table.from_batches(batches)
                batches = table.to_batches(max_chunksize=groups)
                if groups > dbnread.CHUNK_RECORDS:
                    batches = list(pa.Table.from_batches(batches).combine_chunks().to_batches(groups))
        dst = Path(work) / "write.parquet"
        t0 = time.perf_counter()
        with pq.ParquetWriter(dst, schema_, **opts) as w:
            for b in batches:
                w.write_batch(b)
        secs = time.perf_counter() - t0
        rows = sum(b.num_rows for b in batches)
        extra["mb"] = dst.stat().st_size / 1e6
        if mode.startswith("write:"):  # the downstream cost: silver reads the book's columns back
            from spymaster.layers.silver import _BOOK_COLUMNS

            del batches
            best = (float("inf"), float("inf"))
            for _ in range(3):
                t0, c0 = time.perf_counter(), time.process_time()
                pq.read_table(dst, columns=_BOOK_COLUMNS)
                best = min(best, (time.process_time() - c0, time.perf_counter() - t0))
            extra["read_cpu"], extra["read_secs"] = best
    print(
        json.dumps(
            {"secs": secs, "rows": rows, "peak_rss": _vm_hwm(), "cpu": time.process_time() - cpu0, **extra}
        )
    )


def _measure(mode: str, schema: str, src: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-bronze-run-") as work:
        out = subprocess.run(
            [sys.executable, __file__, "--child", mode, schema, str(src), work],
            check=True,
            capture_output=True,
            text=True,
        )
    res: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    res["load"] = os.getloadavg()[0]
    return res


LEVERS: list[tuple[str, dict[str, Any]]] = [
    ("shipped: ints delta+lz4, floats BSS+zstd 1", {}),
    ("before: zstd 1 everywhere, floats BSS", {"_zstd1": True}),
    ("statistics on every column", {"write_statistics": True}),
    ("ints delta, zstd 1 everywhere", {"_codec": ("zstd", 1)}),
    ("ints delta, lz4 everywhere", {"_codec": ("lz4", None)}),
    ("ints delta, zstd -3 everywhere", {"_codec": ("zstd", -3)}),
    ("ints plain, lz4 everywhere", {"_zstd1": True, "compression": "lz4", "compression_level": None}),
    ("ints plain, snappy everywhere", {"_zstd1": True, "compression": "snappy", "compression_level": None}),
    ("ints plain: lz4 for ints, zstd 1 for the rest", {"_zstd1": True, "_lz4_ints": True}),
    ("dictionary on every column", {"_zstd1": True, "use_dictionary": True}),
    ("row groups of 65,536", {"_rows_per_group": 65_536}),
    ("row groups of 524,288", {"_rows_per_group": 524_288}),
]
"""One change at a time from the shipped options (``_zstd1``: from the options before, zstd 1 on
every column with byte-stream-split floats and plain integers)."""


def _lever_options(schema: Any, shipped: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    import pyarrow as pa

    opts = dict(shipped)
    floats = [f.name for f in schema if pa.types.is_floating(f.type)]
    ints = [f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type)]
    if change.pop("_zstd1", False):
        opts.pop("column_encoding")
        opts.update(compression="zstd", compression_level=1, use_byte_stream_split=floats or False)
    if "_codec" in change:
        codec, level = change.pop("_codec")
        opts["compression"] = codec
        opts["compression_level"] = level
    if change.pop("_lz4_ints", False):
        opts["compression"] = {f.name: "lz4" if f.name in ints else "zstd" for f in schema}
        opts["compression_level"] = {f.name: 1 for f in schema if f.name not in ints}
    return {**opts, **change}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-levers", action="store_true", help="skip the per-option write runs")
    ap.add_argument("--child", nargs=4, metavar=("MODE", "SCHEMA", "SRC", "WORK"))
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return

    from spymaster.lake.paths import Product, RawKind
    from spymaster.synth import generate_day

    with tempfile.TemporaryDirectory(prefix="bench-bronze-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        day = generate_day(DATE, scale=args.scale, seed=args.seed)
        print(f"generated {DATE} at scale {args.scale} in {time.perf_counter() - t0:.1f} s")
        srcs = {}
        for schema in ("mbp-10", "trades"):
            srcs[schema] = work / f"{schema}.dbn.zst"
            srcs[schema].write_bytes(day.files[RawKind(Product.FUT, schema)])
        del day
        print(f"load before: {_load()}")
        results = []
        for schema, src in srcs.items():
            runs = {m: _measure(m, schema, src) for m in ("bronze", "to_parquet", "decode", "write")}
            assert runs["bronze"]["rows"] == runs["to_parquet"]["rows"], runs
            results.append({"schema": schema, "file_mb": src.stat().st_size / 1e6, "runs": runs})
        levers = []
        if not args.no_levers:
            for i, (label, _) in enumerate(LEVERS):
                r = _measure(f"write:{i}", "mbp-10", srcs["mbp-10"])
                levers.append({"lever": label, **r})
        print(f"load after:  {_load()}")

    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    hdr = (
        f"{'schema':<8}{'records':>11}{'MB zst':>8} | {'bronze':>9}{'to_parquet':>11}{'ratio':>7}"
        f" | {'decode':>9}{'write':>9} | {'RSS ours':>9}{'RSS base':>9} | {'MB ours':>8}{'MB base':>8}"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        runs = r["runs"]
        n = runs["bronze"]["rows"]
        rate = {m: n / runs[m]["secs"] / 1e6 for m in runs}
        print(
            f"{r['schema']:<8}{n:>11,}{r['file_mb']:>8.1f} | {rate['bronze']:>5.2f} M/s{rate['to_parquet']:>7.2f} M/s"
            f"{rate['bronze'] / rate['to_parquet']:>6.1f}x | {rate['decode']:>5.2f} M/s{rate['write']:>5.2f} M/s"
            f" | {runs['bronze']['peak_rss'] / 1e9:>7.2f}GB{runs['to_parquet']['peak_rss'] / 1e9:>7.2f}GB"
            f" | {runs['bronze']['mb']:>8.0f}{runs['to_parquet']['mb']:>8.0f}"
        )
    print("(decode: records to Arrow, nothing written; write: the decoded batches, one writer; bronze runs")
    print(
        f" {_files(results)} files written by 2 parallel writers while two more threads decompress and decode)"
    )
    for r in results:
        runs = r["runs"]
        b, t = runs["bronze"], runs["to_parquet"]
        cold = t["secs"] / (b["secs"] + b["calendar"])
        print(
            f"  {r['schema']}: bronze {b['secs']:.2f} s, {b['cpu']:.2f} CPU-s ({b['cpu'] / b['secs']:.2f} cores busy,"
            f" load {b['load']:.2f}); to_parquet {t['secs']:.2f} s, {t['cpu']:.2f} CPU-s (load {t['load']:.2f});"
            f" the exchange calendar, built before the clock: {b['calendar']:.2f} s (with it, the first file"
            f" of a process: {cold:.1f}x)"
        )
    if levers:
        print()
        print("levers, MBP-10 write alone (one writer, one option changed from the shipped set), and the")
        print("downstream cost: silver's columns (ts, id, 20 prices, 20 sizes) read back from that file:")
        ref = levers[0]["secs"]
        for lv in levers:
            print(
                f"  {lv['lever']:<46}{lv['rows'] / lv['secs'] / 1e6:>6.2f} M/s {lv['secs']:>6.2f} s"
                f" ({lv['secs'] / ref:>4.2f}x time) {lv['mb']:>6.0f} MB | read {lv['read_cpu']:>5.2f} CPU-s"
                f" {lv['read_secs']:>5.2f} s"
            )
    goals = []
    for r in results:
        runs = r["runs"]
        ratio = runs["to_parquet"]["secs"] / runs["bronze"]["secs"]
        need = 3.0 if r["schema"] == "mbp-10" else 2.0
        goals.append(
            f"{r['schema']} {ratio:.1f}x (goal ≥ {need:.0f}x: {'met' if ratio >= need else 'not met'})"
        )
        rss = runs["bronze"]["peak_rss"] / 1e9
        goals.append(
            f"{r['schema']} peak RSS {rss:.2f} GB (goal ≤ 1.5 GB: {'met' if rss <= 1.5 else 'not met'})"
        )
    print("goals: " + "; ".join(goals))
    OUT.mkdir(exist_ok=True)
    with open(OUT / "bronze.jsonl", "a") as f:
        f.write(
            json.dumps(
                {
                    "at": dt.datetime.now(dt.UTC).isoformat(),
                    "scale": args.scale,
                    "results": results,
                    "levers": levers,
                }
            )
            + "\n"
        )


def _files(results: list[dict[str, Any]]) -> str:
    return " and ".join(f"{r['runs']['bronze'].get('files', 1)} ({r['schema']})" for r in results)


def _load() -> str:
    """The 1/5/15-minute load averages: on a shared machine, figures under load are slower."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
