"""Bronze on a real lake (local folder and S3 over HTTP): real fixtures, bad inputs, atomic commits."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import pytest
import zstandard

from spymaster.errors import (
    BadInputError,
    CorruptInputError,
    EmptyInputError,
    MislabelledInputError,
    UnknownDatasetError,
)
from spymaster.lake import Lake, committed_dates, paths, quarantine, read_committed, read_manifest
from spymaster.lake.paths import Layer, Product, RawKind
from spymaster.layers import bronze
from spymaster.raw import dbnread
from spymaster.raw.ingest import ingest
from spymaster.synth import dbnwrite
from tests.support import fixture

FIX_DATE = dt.date(2020, 12, 28)  # the trading date of the GLBX.MDP3 fixtures (ESH1)
BAD_DATE = dt.date(2020, 12, 29)
FUT_TRADES = RawKind(Product.FUT, "trades")
FUT_MBP10 = RawKind(Product.FUT, "mbp-10")
FUT_DEF = RawKind(Product.FUT, "definition")


def _big_trades(date: dt.date, n: int = 200_000) -> bytes:
    """A multi-chunk trades file inside ``date``'s session, so truncation hits mid-stream."""
    from spymaster import sessions

    lo, _ = sessions.globex_session(date)
    r = dbnwrite.empty_records("trades", n)
    r["instrument_id"] = 5482
    r["ts_event"] = lo + np.arange(n, dtype=np.uint64) * 100_000
    r["ts_recv"] = r["ts_event"] + 1_000
    r["price"] = dbnwrite.to_fixed(3700 + (np.arange(n) % 40) * 0.25)
    r["size"] = 1
    r["action"] = b"T"
    r["side"] = b"B"
    md = dbnwrite.metadata(
        schema="trades",
        start_ns=lo,
        end_ns=int(r["ts_recv"][-1]) + 1,
        symbols=["ES.FUT"],
        mappings={"ESH1": 5482},
    )
    return dbnwrite.encode(md, r)


def _bad_cases() -> dict[str, tuple[RawKind, Callable[[], bytes], type[BadInputError], str]]:
    def big() -> bytes:
        return _big_trades(BAD_DATE, 200_000)

    def small_raw() -> bytes:
        return zstandard.ZstdDecompressor().decompress(_big_trades(BAD_DATE, 100), max_output_size=1 << 20)

    def corrupt() -> bytes:
        data = bytearray(big())
        mid = len(data) // 2
        data[mid : mid + 256] = b"\xff" * 256
        return bytes(data)

    return {
        "empty": (FUT_TRADES, lambda: b"", EmptyInputError, "empty"),
        "truncated-record": (
            FUT_TRADES,
            lambda: zstandard.ZstdCompressor().compress(small_raw()[:-7]),
            CorruptInputError,
            "truncated",
        ),
        "truncated-zstd": (FUT_TRADES, lambda: big()[: len(big()) * 2 // 3], CorruptInputError, "truncated"),
        "corrupt-zstd": (FUT_TRADES, corrupt, CorruptInputError, "corrupt"),
        "not-dbn": (FUT_TRADES, lambda: os.urandom(4096), CorruptInputError, "not a DBN file"),
        "header-only": (
            FUT_TRADES,
            lambda: zstandard.ZstdCompressor().compress(small_raw()[: -100 * 48]),
            EmptyInputError,
            "no records",
        ),
        "wrong-schema": (FUT_MBP10, big, MislabelledInputError, "schema is trades"),
        "wrong-date": (
            FUT_TRADES,
            lambda: fixture("trades").read_bytes(),
            MislabelledInputError,
            "not the 2020-12-29 session",
        ),
        "unknown-dataset": (
            FUT_DEF,
            lambda: fixture("definition", "v3").read_bytes(),
            UnknownDatasetError,
            "XNAS.ITCH",
        ),
    }


def _land_fixtures(lake: Lake) -> None:
    placed, refused, unused = ingest(lake, [fixture("trades"), fixture("mbp-10"), fixture("definition")])
    assert unused == []
    assert not refused
    assert {p.key for p in placed} == {paths.raw_file(k, FIX_DATE) for k in (FUT_TRADES, FUT_MBP10, FUT_DEF)}


def test_real_fixtures_ingest_and_build_bronze(lake: Lake) -> None:
    # Given the real Databento ES fixtures landed by their own metadata
    _land_fixtures(lake)
    for kind, schema in ((FUT_TRADES, "trades"), (FUT_MBP10, "mbp-10"), (FUT_DEF, "definition")):
        # When bronze builds each
        result = bronze.build(lake, kind, FIX_DATE)
        # Then the committed table equals a direct decode of the same file, symbol mapped
        got = read_committed(lake, Layer.BRONZE, kind.bronze_table, FIX_DATE)
        want = pa.Table.from_batches(list(dbnread.decode(fixture(schema))))
        assert got.equals(want)
        assert (
            result.rows == got.num_rows == read_manifest(lake, Layer.BRONZE, kind.bronze_table, FIX_DATE).rows
        )
        assert set(got.column("symbol").to_pylist()) == {"ESH1"}
        assert got.schema == dbnread.arrow_schema(schema)


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_input_fails_clearly_is_quarantined_and_loses_nothing(lake: Lake, case: str) -> None:
    kind, make, err, words = _bad_cases()[case]
    # Given a good, committed date and a bad file landed for another date
    _land_fixtures(lake)
    bronze.build(lake, FUT_TRADES, FIX_DATE)
    good_manifest = lake.read_bytes(paths.manifest(Layer.BRONZE, FUT_TRADES.bronze_table, FIX_DATE))
    key = paths.raw_file(kind, BAD_DATE)
    lake.write_bytes(key, make())

    # When bronze runs on it
    with pytest.raises(err) as info:
        bronze.build(lake, kind, BAD_DATE)

    # Then the error names the file and the problem
    assert info.value.file == key
    assert key in str(info.value)
    assert words in str(info.value)
    # and the file sits in quarantine with its reason, no longer in raw/
    q = [x for x in quarantine.list_all(lake) if x.original == key]
    assert len(q) == 1
    assert q[0].error == err.__name__
    assert words in q[0].reason
    assert lake.exists(q[0].file)
    assert not lake.exists(key)
    # and no bronze output of it is visible or even left behind
    assert BAD_DATE not in committed_dates(lake, Layer.BRONZE, kind.bronze_table)
    assert lake.list_files(paths.table_dir(Layer.BRONZE, kind.bronze_table, BAD_DATE)) == []
    # and the other date is untouched
    assert lake.read_bytes(paths.manifest(Layer.BRONZE, FUT_TRADES.bronze_table, FIX_DATE)) == good_manifest
    assert read_committed(lake, Layer.BRONZE, FUT_TRADES.bronze_table, FIX_DATE).num_rows == 4


def test_rerun_replaces_and_a_failed_rerun_keeps_the_previous_commit(local_lake: Lake) -> None:
    lake = local_lake
    key = paths.raw_file(FUT_TRADES, BAD_DATE)
    big = _big_trades(BAD_DATE)
    lake.write_bytes(key, big)
    first = bronze.build(lake, FUT_TRADES, BAD_DATE)
    second = bronze.build(lake, FUT_TRADES, BAD_DATE)
    # Re-running replaces: the same rows, only the latest run's files remain
    assert first.manifest.run_id != second.manifest.run_id
    assert (
        lake.list_files(paths.table_dir(Layer.BRONZE, FUT_TRADES.bronze_table, BAD_DATE))
        == second.manifest.files
    )
    before = read_committed(lake, Layer.BRONZE, FUT_TRADES.bronze_table, BAD_DATE)
    assert before.num_rows == 200_000
    # A failing re-run (the raw file replaced by a truncated one) leaves the last commit intact
    lake.write_bytes(key, big[: len(big) // 2])
    with pytest.raises(CorruptInputError):
        bronze.build(lake, FUT_TRADES, BAD_DATE)
    assert (
        read_manifest(lake, Layer.BRONZE, FUT_TRADES.bronze_table, BAD_DATE).run_id == second.manifest.run_id
    )
    assert read_committed(lake, Layer.BRONZE, FUT_TRADES.bronze_table, BAD_DATE).equals(before)
    assert (
        lake.list_files(paths.table_dir(Layer.BRONZE, FUT_TRADES.bronze_table, BAD_DATE))
        == second.manifest.files
    )


@pytest.mark.parametrize("writers", [bronze.WRITERS, 0], ids=["parallel", "one-thread"])
def test_row_groups_follow_decode_chunks(local_lake: Lake, writers: int) -> None:
    import pyarrow.parquet as pq

    lake = local_lake
    lake.write_bytes(paths.raw_file(FUT_TRADES, BAD_DATE), _big_trades(BAD_DATE, 300_000))
    m = bronze.build(lake, FUT_TRADES, BAD_DATE, writers=writers).manifest
    metas = [pq.ParquetFile(lake.path(f)).metadata for f in m.files]
    groups = [md.row_group(i).num_rows for md in metas for i in range(md.num_row_groups)]
    # one row group per decoded chunk: memory in flight is a few chunks, whatever the file size
    assert len(groups) == -(-300_000 // dbnread.CHUNK_RECORDS)
    assert max(groups) <= dbnread.CHUNK_RECORDS
    # files of ROW_GROUPS_PER_FILE row groups (the last may be short), in the records' order
    assert [md.num_row_groups for md in metas[:-1]] == [bronze.ROW_GROUPS_PER_FILE] * (len(metas) - 1)
    ts = read_committed(lake, Layer.BRONZE, FUT_TRADES.bronze_table, BAD_DATE).column("ts_recv")
    assert len(ts) == 300_000
    assert pa.compute.all(pa.compute.greater(ts[1:], ts[:-1])).as_py()


@pytest.mark.parametrize("writers", [2, 0], ids=["two-writers", "one-thread"])
def test_parallel_writers_keep_the_order_and_stop_on_a_failure(local_lake: Lake, writers: int) -> None:
    lake = local_lake
    schema = pa.schema([("i", pa.int64())])
    batches = [pa.record_batch([pa.array(np.arange(k * 10, k * 10 + 10))], schema=schema) for k in range(7)]
    handed: list[str] = []

    def out(i: int) -> str:
        handed.append(f"bronze/t/part-{len(handed):05d}.parquet")
        return handed[-1]

    # Given 7 batches, files of 2 row groups, 2 writers (or the caller's thread): 4 files, in order
    files, rows = bronze.write_parts(lake, out, schema, iter(batches), per_file=2, writers=writers)
    assert files == handed
    assert len(files) == 4
    assert rows == 70
    assert lake.read_parquet(files).column("i").to_pylist() == list(range(70))

    # When the source fails mid-way, the error comes out (no writer is left waiting)
    def failing() -> Iterator[pa.RecordBatch]:
        yield from batches[:3]
        raise CorruptInputError("boom", file="x")

    with pytest.raises(CorruptInputError, match="boom"):
        bronze.write_parts(lake, out, schema, failing(), per_file=1, writers=writers)

    # When a writer fails (a batch of another schema), the job fails with its reason
    wrong = pa.record_batch([pa.array(["a"])], names=["i"])
    with pytest.raises(ValueError, match="schema"):
        bronze.write_parts(
            lake, out, schema, iter([batches[0], wrong, *batches[1:]]), per_file=1, writers=writers
        )
