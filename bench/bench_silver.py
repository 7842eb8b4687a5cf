"""Silver seconds and peak RSS for one full-scale generated day (goal: < 20 s on one core).

Prepares a local lake (generate + bronze) in a temp folder, then runs ``silver.build`` in a fresh
subprocess pinned to one core, so its time and peak RSS (VmHWM) are silver's alone.

    python bench/bench_silver.py --scale 1.0
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).parent / "out"


def _vm_hwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _child(lake_dir: str, date: str) -> None:
    import numpy as np

    from spymaster.indicators import bars
    from spymaster.lake import Lake
    from spymaster.layers import silver
    from spymaster.settings import StorageSettings

    lake = Lake(StorageSettings(lake_uri=lake_dir))
    # The timing is silver's work: its lazy import of the EMA's filter (scipy.signal, 0.6-2.3 s
    # depending on what scipy already loaded) is paid before, as the live engine pays it.
    bars.ema(np.zeros(3), 2)
    t0 = time.perf_counter()
    out = silver.build(lake, dt.date.fromisoformat(date))
    secs = time.perf_counter() - t0
    print(json.dumps({"secs": secs, "peak_rss": _vm_hwm(), "state_rows": out.state.num_rows}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--date", default="2026-03-05")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--child", nargs=2, metavar=("LAKE", "DATE"))
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return

    from spymaster.lake import Lake, paths
    from spymaster.layers import bronze
    from spymaster.settings import StorageSettings
    from spymaster.synth import generate

    date = dt.date.fromisoformat(args.date)
    with tempfile.TemporaryDirectory(prefix="bench-silver-") as tmp:
        lake = Lake(StorageSettings(lake_uri=tmp))
        t0 = time.perf_counter()
        generate(lake, date, 1, scale=args.scale, seed=args.seed, progress=False)
        t1 = time.perf_counter()
        for kind in paths.RAW_KINDS:
            bronze.build(lake, kind, date)
        t2 = time.perf_counter()
        cmd = [sys.executable, __file__, "--child", tmp, args.date]
        if hasattr(os, "sched_setaffinity"):
            cmd = ["taskset", "-c", "0", *cmd]
        res = json.loads(
            subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
        )
    print(f"scale {args.scale}: generate {t1 - t0:.1f} s, bronze (7 files) {t2 - t1:.1f} s")
    print(
        f"silver on one core: {res['secs']:.1f} s, peak RSS {res['peak_rss'] / 1e9:.2f} GB, {res['state_rows']:,} state rows"
    )
    print(f"goal < 20 s: {'met' if res['secs'] < 20 else 'NOT met'}")
    OUT.mkdir(exist_ok=True)
    with open(OUT / "silver.jsonl", "a") as f:
        f.write(json.dumps({"at": dt.datetime.now(dt.UTC).isoformat(), "scale": args.scale, **res}) + "\n")


if __name__ == "__main__":
    main()
