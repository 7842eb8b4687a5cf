"""The per-date job is resumable, and a replaced raw file makes exactly its date stale."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa

from spymaster.lake import Lake, paths, read_committed
from spymaster.lake.paths import Layer, Product, RawKind
from spymaster.layers import pipeline
from spymaster.synth import generate, generate_day

D1, D2 = dt.date(2026, 3, 10), dt.date(2026, 3, 11)
FUT_TRADES = RawKind(Product.FUT, "trades")


def test_resume_skips_done_work_and_a_replaced_raw_file_rebuilds_its_date(local_lake: Lake) -> None:
    lake = local_lake
    generate(lake, D1, 2, scale=0.01, seed=31, progress=False)
    first = pipeline.run(lake.settings, [D1, D2])
    assert [r.done for r in first] == [["bronze", "silver", "gold", "streams"]] * 2
    # Resumed: nothing is redone
    again = pipeline.run(lake.settings, [D1, D2])
    assert [r.done for r in again] == [[], []]
    assert [r.skipped for r in again] == [["bronze", "silver", "gold", "streams"]] * 2
    ids_d2 = read_committed(lake, Layer.GOLD, paths.EPISODES_TABLE, D2).column("episode_id").to_pylist()
    # A corrected trades file lands for D1 (another market: a different seed)
    lake.write_bytes(paths.raw_file(FUT_TRADES, D1), generate_day(D1, scale=0.01, seed=32).files[FUT_TRADES])
    third = pipeline.run(lake.settings, [D1, D2])
    # Only the replaced kind's bronze is rebuilt, then every layer above it
    assert third[0].done == ["bronze", "silver", "gold", "streams"]
    assert third[1].done == ["streams"]  # D2's streams are scaled on D1's silver
    manifest = lake.read_json(paths.manifest(Layer.BRONZE, FUT_TRADES.bronze_table, D1))
    assert manifest["inputs"]["bytes"] == lake.size(paths.raw_file(FUT_TRADES, D1))
    d2 = read_committed(lake, Layer.GOLD, paths.EPISODES_TABLE, D2)
    assert d2.column("episode_id").to_pylist() == ids_d2


def test_one_thread_per_worker_builds_the_same_gold_and_times_each_stage(tmp_path_factory: Any) -> None:
    from spymaster.settings import StorageSettings

    # Given the same raw day in two lakes
    lakes = [Lake(StorageSettings(lake_uri=str(tmp_path_factory.mktemp(n)))) for n in ("shared", "one")]
    for lake in lakes:
        generate(lake, D1, 1, scale=0.01, seed=33, progress=False)
    cpu, io = pa.cpu_count(), pa.io_thread_count()
    # When one runs with the default threads and the other with one thread per worker
    default = pipeline.run(lakes[0].settings, [D1])
    one = pipeline.run(lakes[1].settings, [D1], threads=1)
    # Then gold is the same, every stage was timed, and the process's pools are given back
    assert all(r.ok for r in default + one)
    gold = [read_committed(lake, Layer.GOLD, paths.EPISODES_TABLE, D1) for lake in lakes]
    assert gold[0].num_rows > 0
    assert _bytes(gold[0]) == _bytes(gold[1])  # bit for bit (NaNs included, which ``equals`` never matches)
    assert set(one[0].timings) == set(pipeline.STAGES)
    assert all(wall >= 0 and cpu_s >= 0 for wall, cpu_s in one[0].timings.values())
    assert (pa.cpu_count(), pa.io_thread_count()) == (cpu, io)


def _bytes(table: pa.Table) -> bytes:
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue())
