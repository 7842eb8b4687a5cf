"""Where ``bronze.build``'s time goes on one full-scale MBP-10 file: each stage alone, wall and
process CPU seconds (CPU is what two cores share; on a busy machine wall also counts waiting).

Stages: reading the records (zstd + numpy views), the two-pass screen's reference pass (a second
full decompression), decoding without and with the screen, writing the decoded batches with one
writer, and the shipped ``bronze.build`` end to end.

    python bench/profile_bronze.py --scale 1.0
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from spymaster.lake import Lake, paths
from spymaster.lake.paths import Product, RawKind
from spymaster.layers import bronze
from spymaster.raw import dbnread, quality
from spymaster.settings import StorageSettings
from spymaster.synth import generate_day

DATE = dt.date(2026, 3, 5)
KIND = RawKind(Product.FUT, "mbp-10")


def _clock(label: str, f: Callable[[], Any]) -> Any:
    t, c = time.perf_counter(), time.process_time()
    out = f()
    print(
        f"  {label:<40} wall {time.perf_counter() - t:6.2f} s   CPU {time.process_time() - c:6.2f} s",
        flush=True,
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="profile-bronze-") as tmp:
        src = Path(tmp) / "mbp-10.dbn.zst"
        src.write_bytes(generate_day(DATE, scale=args.scale, seed=args.seed).files[KIND])
        print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        info = _clock(
            "inspect + placement check", lambda: dbnread.check_placement(dbnread.inspect(src), KIND, DATE)
        )
        info = dbnread.inspect(src)
        n = _clock("records (zstd + numpy views)", lambda: sum(len(a) for a in dbnread.records(src)))
        _clock("reference pass (two-pass screen only)", lambda: quality.screen(src, info, KIND))
        _clock("decode, no screen", lambda: sum(b.num_rows for b in dbnread.decode(src)))
        s = quality.screen(src, info, KIND, deferred=True)
        _clock(
            "decode, screen gathering medians", lambda: sum(b.num_rows for b in dbnread.decode(src, screen=s))
        )
        print(f"  (confirmed without a second pass: {s.confirm()})")
        batches = list(dbnread.decode(src))
        opts = bronze.PARQUET_OPTIONS(batches[0].schema)

        def write() -> None:
            with pq.ParquetWriter(Path(tmp) / "w.parquet", batches[0].schema, **opts) as w:
                for b in batches:
                    w.write_batch(b)

        _clock("write, one writer", write)
        batches.clear()
        lake = Lake(StorageSettings(lake_uri=str(Path(tmp) / "lake")))
        key = paths.raw_file(KIND, DATE)
        Path(lake.path(key)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, lake.path(key))
        _clock("bronze.build (all threads' CPU)", lambda: bronze.build(lake, KIND, DATE))
        print(f"{n:,} records; load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
