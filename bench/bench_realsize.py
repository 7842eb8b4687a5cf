"""Real-size days: raw → gold + index per date at several scales (the step engine; optionally an older silver).

For each scale the day's raw files are generated once; each implementation then runs the per-date
job (bronze, silver, gold, then the indexer for the date) in a fresh subprocess on a copy of the
raw files, so its wall time and peak RSS (VmHWM) are its own. ``after`` is the step engine with the
book streamed from bronze; ``--before-ref REF`` also runs the silver.py of commit REF (``git show``)
for a side-by-side (the pre-engine silver, which held the RTH book in memory, no longer imports
against today's modules: its figures from session 3 are kept in docs/BENCHMARKS.md). Issue 16 goal 5: peak RSS ≤ 3 GB whatever the day's size, wall time linear.

    python bench/bench_realsize.py --scales 1 3 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).parent / "out"
ROOT = Path(__file__).resolve().parent.parent


def _vm_hwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _child(lake_dir: str, date: str, impl: str, before_ref: str = "") -> None:
    from spymaster.lake import Lake
    from spymaster.layers import index, pipeline, silver
    from spymaster.settings import StorageSettings

    if impl == "before":
        src = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{before_ref}:common/spymaster/layers/silver.py"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        path = Path(tempfile.mkdtemp()) / "silver_main.py"
        path.write_text(src)
        spec = importlib.util.spec_from_file_location("silver_main", path)
        assert spec is not None
        assert spec.loader is not None
        old = importlib.util.module_from_spec(spec)
        sys.modules["silver_main"] = old
        spec.loader.exec_module(old)
        silver.build = old.build  # type: ignore[assignment]
    lake = Lake(StorageSettings(lake_uri=lake_dir))
    d = dt.date.fromisoformat(date)
    t0 = time.perf_counter()
    res = pipeline.run_date(lake.settings, d)
    assert res.ok, res.error
    index.index(lake, [d])
    secs = time.perf_counter() - t0
    print(json.dumps({"secs": secs, "peak_rss": _vm_hwm()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 3.0, 5.0])
    ap.add_argument("--date", default="2026-03-05")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--before-ref",
        default="",
        help="a commit whose silver.py runs as 'before' (its imports must still resolve); none: after only",
    )
    ap.add_argument("--child", nargs=3, metavar=("LAKE", "DATE", "IMPL"))
    args = ap.parse_args()
    if args.child:
        _child(*args.child, before_ref=args.before_ref)
        return

    from spymaster.lake import Lake
    from spymaster.settings import StorageSettings
    from spymaster.synth import generate

    date = dt.date.fromisoformat(args.date)
    rows = []
    for scale in args.scales:
        with tempfile.TemporaryDirectory(prefix="bench-realsize-") as tmp:
            raw = Path(tmp) / "raw-only"
            lake = Lake(StorageSettings(lake_uri=str(raw)))
            t0 = time.perf_counter()
            generate(lake, date, 1, scale=scale, seed=args.seed, progress=False)
            gen = time.perf_counter() - t0
            n_mbp = n_tr = 0
            res = {}
            for impl in ("before", "after") if args.before_ref else ("after",):
                lake_dir = Path(tmp) / impl
                shutil.copytree(raw, lake_dir)
                cmd = [sys.executable, __file__, "--child", str(lake_dir), args.date, impl]
                cmd += ["--before-ref", args.before_ref]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
                res[impl] = json.loads(out)
                if impl == "after":
                    from spymaster.lake import paths, read_manifest
                    from spymaster.lake.paths import Layer

                    done = Lake(StorageSettings(lake_uri=str(lake_dir)))
                    n_mbp = read_manifest(done, Layer.BRONZE, paths.FUT_MBP10.bronze_table, date).rows
                    n_tr = read_manifest(done, Layer.BRONZE, paths.FUT_TRADES.bronze_table, date).rows
                shutil.rmtree(lake_dir)
        row = {"scale": scale, "mbp10": n_mbp, "trades": n_tr, "generate_s": gen, **res}
        rows.append(row)
        before = (
            f"before {res['before']['secs']:.1f} s, peak RSS {res['before']['peak_rss'] / 1e9:.2f} GB | "
            if "before" in res
            else ""
        )
        print(
            f"scale {scale:g}: {n_mbp / 1e6:.1f} M MBP-10 + {n_tr / 1e6:.2f} M trades; raw → gold + index: "
            f"{before}after {res['after']['secs']:.1f} s, peak RSS {res['after']['peak_rss'] / 1e9:.2f} GB",
            flush=True,
        )
    worst = max(r["after"]["peak_rss"] for r in rows) / 1e9
    print(
        f"goal peak RSS <= 3 GB at every scale (after): {'met' if worst <= 3 else 'NOT met'} (worst {worst:.2f} GB)"
    )
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        ratio = (b["after"]["secs"] / a["after"]["secs"]) / (
            (b["mbp10"] + b["trades"]) / (a["mbp10"] + a["trades"])
        )
        print(
            f"after: wall time per record at scale {b['scale']:g} / at scale {a['scale']:g} = {ratio:.2f} (1 = linear)"
        )
    OUT.mkdir(exist_ok=True)
    with open(OUT / "realsize.jsonl", "a") as f:
        f.write(json.dumps({"at": dt.datetime.now(dt.UTC).isoformat(), "rows": rows}) + "\n")


if __name__ == "__main__":
    main()
