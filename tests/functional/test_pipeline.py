"""The per-date job is resumable, and a replaced raw file makes exactly its date stale."""

from __future__ import annotations

import datetime as dt

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
