"""Run every benchmark and regenerate docs/BENCHMARKS.md from what they print.

Each benchmark runs in its own process, one after the other (they would otherwise compete for
the two cores); their printed tables go into the document verbatim, under the machine's facts.

    python bench/report.py            # all (≈ 40 minutes on 2 cores)
    python bench/report.py bronze     # just one: its section is replaced, the others are kept as
                                      # they were (each says when it was measured)
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "BENCHMARKS.md"

BENCHES: dict[str, tuple[list[str], str]] = {
    "bronze": (
        ["bench/bench_bronze.py", "--scale", "1.0"],
        "Bronze (`bronze.build` on a local lake: placement check, screening, decode, Parquet, commit) vs "
        "`DBNStore.to_parquet` on the same full-scale generated day, each in its own process (peak RSS = "
        "that process's VmHWM), imports outside the clock, and so is the exchange calendar bronze builds once "
        "per process (its seconds are printed with the ratio the first file of a process sees). Goals "
        "(issue 16): ≥ 3× for MBP-10, ≥ 2× for trades, peak RSS ≤ 1.5 GB. Beside the total, decode alone "
        "and write alone (one writer) show where the time goes, and CPU-seconds with the load (the machine "
        "is shared); the levers table writes the same MBP-10 batches with one option changed and reads "
        "silver's columns back from each file (a codec's downstream cost). Shipped: one pass over the file "
        "(the screen gathers the session medians during the decode and confirms after it that none would "
        "have dropped a record; only a file with a price off its median is decoded again, medians first); "
        "zstd decompresses on a thread of its own into chunk buffers reused once let go (a fresh 48 MB "
        "buffer per chunk meant mapping and unmapping pages, whose faults serialise the threads on the "
        "process's memory-map lock: bronze then kept one core of two busy); a second thread screens "
        "(instruments found by hashing, duplicate hashes kept in one growing buffer) and converts, and two "
        "writers encode consecutive files of 4 row groups at once: integers and timestamps delta-encoded "
        "and lz4-compressed, floats byte-stream-split and zstd 1 (≈ 18 % more bytes than zstd 1 everywhere, "
        "written faster and read back faster by silver); memory is bounded by the chunk (131 072 records = "
        "one row group), not by the file.",
    ),
    "silver": (
        ["bench/bench_silver.py", "--scale", "1.0"],
        "Silver for one full-scale day, pinned to one core. Goal: < 20 s.",
    ),
    "gold": (
        ["bench/bench_gold_index.py", "--days", "20", "--scale", "0.05"],
        "Gold and the vector table over 20 generated days; one table with partition columns (shipped) "
        "versus one table per partition on the same rows. One table wins where it matters to the single "
        "writer (a date touches up to 60 partitions: one commit instead of up to 60) and costs about a "
        "millisecond when the API loads a partition, which it does once per table version. Queries never go "
        "through LanceDB search: the API searches in-memory partitions exactly, so no ANN index is built "
        "(recall 1.0 by construction; see the query section for the latency at 1 M episodes).",
    ),
    "pipeline": (
        ["bench/bench_pipeline.py", "--scale", "1.0", "--days", "6", "--backfill-scale", "1.0"],
        "A full-scale day raw → gold on 2 cores; a backfill of 6 full-scale days (`spymaster run "
        "--workers N`, raw → indexed) with 1 and 2 workers (goal: ≥ 1.8×), twice: with the default "
        "threads (a worker's bronze decompresses, decodes and writes on several threads, Arrow and BLAS use "
        "their pools, so one worker already keeps ≈ 1.5 cores busy and the ceiling on 2 cores is well below "
        "2×) and with one thread per worker (`--threads 1`, `SPYMASTER_WORKER_THREADS=1`: what a per-date "
        "Lambda at the default memory, 1 vCPU, can use; this is the scaling of the per-date design, not of "
        "the default). Each is printed whole and for the date jobs alone (the index and the fits run once, "
        "in the driver, after them; the streams' projections are fitted on a thread while the index runs, "
        "so their figure is what is left of them after it), with per-stage CPU-seconds per day, the serial tail and the ceiling "
        "(one worker's date jobs over half their CPU-seconds, plus the tail). Then the API Lambda's cold "
        "start with the lake on S3 (moto over HTTP), median of three fresh processes, from the indexer's "
        "snapshot (shipped) and, on the same lake without it, from the LanceDB table (before). Goal: "
        "imports + first answer ≤ 1.5 s. CPU seconds and the load are printed beside wall seconds because "
        "other jobs share the two cores.",
    ),
    "query": (
        ["bench/bench_query.py"],
        "Query latency in-process, through ASGI and over HTTP at the demo size and at 1 M synthetic "
        "episodes, against exact numpy search over the same partition; recall@50. Goals: in-process p50 "
        "≤ 5 ms, HTTP p50 ≤ 20 ms, recall@50 ≥ 0.99.",
    ),
    "learned": (
        ["bench/bench_learned.py", "--episodes", "1000000"],
        "The learned similarity (`setup` in `/v1/similar`): the cost of refitting one model, and the served "
        "exact search over 1 M synthetic rows and over the ≈ 1 in 7 of them that are approaches (the served "
        "population), one BLAS thread, and what one new trading day costs at 1 M episodes (fit, "
        "calibration, the API's embedding of the history). Goal: in-process p50 ≤ 5 ms at 1 M episodes.",
    ),
    "scale": (
        ["bench/bench_scale.py", "--sizes", "1000000", "2000000", "--ann-rows", "50000", "--ann-parts", "4"],
        "Towards 10 M episodes (issue 16 goal 4): the in-memory index at 1 M and 2 M synthetic episodes "
        "(resident memory, build, served p50/p99 over the largest partitions; the same without vectors, "
        "what an ANN-served partition keeps; the snapshot's load from S3 in one GET), then the ANN path on "
        "LanceDB tables with the served query shape (settings.ANN: candidates with vectors, re-ranked "
        "exactly): IVF-PQ and IVF-HNSW-SQ on one partition alone, and one table of all partitions searched "
        "with the partition prefilter (served), on local disk and on S3 (moto over HTTP, its own process), "
        "recall@50 against exact search; the linear extrapolation to 10 M, the crossover, and where the "
        "in-memory design stops in a 10 GB Lambda.",
    ),
    "realsize": (
        ["bench/bench_realsize.py", "--scales", "1", "3", "5"],
        "Real-size days (issue 16 goal 5): the per-date job raw → gold + index at 1×, 3× and 5× the "
        "generator's full scale, the step engine (the book streamed from bronze a row group at a time, one "
        "420-s window held), each in a fresh process. Goal: peak RSS ≤ 3 GB at every size, wall time linear "
        "in records. Before the engine (session 3, load 12–14, the RTH book in memory): peak RSS 1.65 / "
        "2.75 / 3.98 GB at 1× / 2× / 3× (the engine then: 0.94 / 1.01 / 1.19 GB).",
    ),
    "live": (
        ["bench/bench_live.py", "--scale", "1", "--speed", "10", "--minutes", "180"],
        "The live engine (issue 14): a full-scale day's whole session (09:30–12:30 ET) replayed at 10× after an unpaced warm-up from the "
        "Globex open; (a) how late the engine consumes each record against its due time, (b) from the "
        "arrival of the record that completes a step to the answer update at an anchor (vector, served "
        "answer, learned setup), in wall time and in the engine's CPU time over the same span (the two "
        "cores are shared, so the wall figure grows with the load average printed beside it; the CPU "
        "figure much less); the engine also computes each bar close's streams (after the answers, "
        "as `spymaster live` does; they count in the step's time and the lag). The warm-up builds the "
        "night's bars and rehearses one step before the open, so the first step runs warm. Goal: "
        "p99 (b) ≤ 50 ms and a lag that does not grow.",
    ),
    "push": (
        ["bench/bench_push.py"],
        "The live push hop: `Hub.publish` → an SSE client of `GET /v1/live/stream` over HTTP (uvicorn on "
        "127.0.0.1, clients in threads of the same process), 200 updates/s shaped like the engine's; then the "
        "source's throughput from the local gateway through the real `databento.Live` client. Goal: the "
        "hop's p99 well inside the 50 ms record → pushed-update budget.",
    ),
}
_NOISE = re.compile(r'HTTP/1\.1"|^\s*$|it/s\]|s/it\]')


def machine() -> list[str]:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    mem = next(
        (
            int(ln.split()[1]) // 1024 // 1024
            for ln in Path("/proc/meminfo").read_text().splitlines()
            if ln.startswith("MemTotal")
        ),
        0,
    )
    pkgs = ", ".join(
        f"{p} {md.version(p)}"
        for p in ("pyarrow", "databento", "databento-dbn", "lancedb", "duckdb", "numpy", "fastapi", "moto")
    )
    return [
        f"- measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, {cpu}",
        f"- {os.cpu_count()} cores, {mem} GiB memory, {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; {pkgs}",
    ]


EARLIER_FIGURES = [
    "",
    "## Figures measured once (moved here from the code's docstrings)",
    "",
    "Design decisions whose figures were measured once, when the decision was made, not by the scripts",
    "above; kept here rather than in docstrings, where they would rot.",
    "",
    "- Query path (`spymaster.retrieval`): LanceDB prefiltered exact search took ≈ 73 ms p50 on local",
    "  disk and ≈ 341 ms on a local S3 endpoint, against ≈ 0.2 ms for numpy exact search over a",
    "  12 k-row partition held in memory, hence partitions in memory and exact search.",
    "- BLAS threads (`ApiSettings.blas_threads`): on a busy 2-core machine multi-threaded OpenBLAS",
    "  turned the query p99 from 0.4 ms into 12 ms; the API pins BLAS to one thread.",
    "- Bronze Parquet (`layers.bronze.PARQUET_OPTIONS`): zstd level 1 with dictionaries only for string",
    "  columns gave 25 % faster writes and 17 % smaller files than dictionary-encoding every numeric",
    "  column of MBP-10.",
    "- Vector-table version check (`serving.snapshot`): `checkout_latest` on the open table took",
    "  ≈ 1 ms locally; the API now checks the indexer's snapshot with one HEAD instead.",
    "- Cold start (issue 16): importing LanceDB alone took 1.36 s of the first answer; pyarrow imports",
    "  pandas on its first array (≈ 0.5-1 s), so the first answer pays for pandas whatever it reads;",
    "  the date's three silver tables are read at once (each is several sequential S3 round trips).",
    "- Benchmarks against moto: a moto server in the benchmark's own process competes with the client",
    "  for the GIL (a 76 MB GET took 50 s); `bench_scale` runs it in its own process.",
    "- Backfill workers (`layers.pipeline`): importing the layers costs ≈ 2.5 s per process; forked",
    "  workers inherit the parent's imports instead.",
]


def kept_sections(text: str) -> dict[str, list[str]]:
    """The document's sections by benchmark name (kept when only some benchmarks run)."""
    out: dict[str, list[str]] = {}
    name: str | None = None
    fenced = False  # a script's own "## " lines inside its output block are not headings
    for line in text.splitlines():
        m = re.match(r"## (\w+): `", line)  # a benchmark's heading, even after an unclosed block
        if m:
            name, fenced = m.group(1), False
            out[name] = [line]
            continue
        if line.startswith("```"):
            fenced = not fenced
        elif line.startswith("## ") and not fenced:
            name = None
            continue
        if name is not None:
            out[name].append(line)
    return {k: v[: len(v) - next(i for i, x in enumerate(reversed(v)) if x.strip())] for k, v in out.items()}


def main() -> None:
    which = sys.argv[1:] or list(BENCHES)
    kept = kept_sections(DOC.read_text()) if DOC.exists() else {}
    parts = [
        "# Benchmarks",
        "",
        "Regenerated by `make bench` (`python bench/report.py`): every section below is the verbatim output of",
        "its script, run one after the other on this machine. None of these run in `make test`.",
        "",
        *machine(),
    ]
    for name, (args, about) in BENCHES.items():
        if name not in which:
            if name in kept:
                parts += ["", *kept[name]]
            continue
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=False)
        secs = time.perf_counter() - t0
        text = "\n".join(ln for ln in out.stdout.splitlines() if not _NOISE.search(ln))
        status = "" if out.returncode == 0 else f" — **failed (exit {out.returncode})**"
        parts += [
            "",
            f"## {name}: `python {' '.join(args)}` ({secs:.0f} s, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC,"
            f" load {os.getloadavg()[0]:.1f}){status}",
            "",
            about,
            "",
            "```",
            text,
            "```",
        ]
        if out.returncode:
            parts += ["", "```", out.stderr[-2000:], "```"]
        print(f"{name}: {secs:.0f} s, exit {out.returncode}", flush=True)
    parts += EARLIER_FIGURES
    DOC.write_text("\n".join(parts) + "\n")
    print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
