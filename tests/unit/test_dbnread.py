"""Bronze decoding of every real Databento fixture, field for field against DBNStore.to_df()."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import databento as db
import databento_dbn as dbn
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from spymaster.raw import dbnread
from tests.support import DATA, fixture, fixture_files

# Fields whose meaning changed between DBN versions: the decoder upgrades them to the current
# layout (DBN v1 statistics carry i32 quantities whose "undefined" sentinel becomes the i64 one).
_UPGRADED = {("statistics", "v1"): {"quantity"}}


def _to_df(path: Path) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return db.DBNStore.from_file(path).to_df().reset_index()


def _dropped_by_upgrade(schema: str, version: str) -> set[str]:
    """Fields an old DBN version has that the current layout no longer carries."""
    if version == "v3":
        return set()
    cls = dbnread._SCHEMA_CLASSES[schema]
    old = getattr(getattr(dbn, version), cls.__name__, cls)
    return {n for n, _ in old._dtypes} - {n for n, _ in cls._dtypes}


def _same(a: object, b: object) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)) or a is pd.NaT:
        return b is None or (isinstance(b, float) and math.isnan(b)) or b is pd.NaT
    return bool(a == b)


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: str(p.relative_to(DATA)))
def test_fixture_matches_to_df_field_for_field(path: Path) -> None:
    # Given a real Databento file, When bronze decodes it
    table = pa.Table.from_batches(list(dbnread.decode(path)))
    ref = _to_df(path)
    ours = table.to_pylist()
    # Then every to_df column exists with equal values, row for row
    assert table.num_rows == len(ref) > 0
    version = path.name.split(".")[-3] if ".v" in path.name else "v3"
    schema = path.name.split(".")[1]
    skip = _UPGRADED.get((schema, version), set())
    dropped = _dropped_by_upgrade(schema, version)
    for col in ref.columns:
        if col in dropped:
            assert col not in table.column_names
            continue
        assert col in table.column_names, col
        if col in skip:
            continue
        for i, expected in enumerate(ref[col].tolist()):
            got = ours[i][col]
            if isinstance(expected, pd.Timestamp):
                expected = expected.value
                got = None if got is None else pd.Timestamp(got).value
            assert _same(expected, got), (col, i, expected, got)


@pytest.mark.parametrize(
    ("schema", "old"),
    [
        ("trades", "v1"),
        ("trades", "v2"),
        ("mbp-10", "v1"),
        ("mbp-10", "v2"),
        ("mbp-1", "v1"),
        ("definition", "v1"),
        ("definition", "v2"),
    ],
)
def test_older_versions_decode_to_the_current_layout(schema: str, old: str) -> None:
    # Given the same records in an old and the current DBN version
    new = pa.Table.from_batches(list(dbnread.decode(fixture(schema, "v3"))))
    prev = pa.Table.from_batches(list(dbnread.decode(fixture(schema, old))))
    # Then both give one schema (the current one), and the same values in every field the old one had
    assert prev.schema == new.schema == dbnread.arrow_schema(schema)
    old_fields = set(_to_df(fixture(schema, old)).columns) - _dropped_by_upgrade(schema, old)
    for col in old_fields:
        assert prev.column(col).to_pylist() == new.column(col).to_pylist(), col


def test_arrow_schema_is_explicit_and_typed() -> None:
    s = dbnread.arrow_schema("mbp-10")
    assert s.field("ts_recv").type == pa.timestamp("ns", tz="UTC")
    assert s.field("ts_event").type == pa.timestamp("ns", tz="UTC")
    assert s.field("bid_px_09").type == pa.float64()
    assert s.field("ask_sz_00").type == pa.uint32()
    assert s.field("side").type == pa.string()
    assert s.field("symbol").type == pa.string()
    assert s.names[0] == "ts_recv"
    assert len([n for n in s.names if n.startswith(("bid_px_", "ask_px_"))]) == 20
    assert s.metadata[b"dbn_schema"] == b"mbp-10"


def test_chunks_are_bounded() -> None:
    path = fixture("mbp-10")
    batches = list(dbnread.decode(path, chunk=1))
    assert [b.num_rows for b in batches] == [1, 1, 1, 1]


def test_undefined_prices_are_null_not_sentinels() -> None:
    t = pa.Table.from_batches(list(dbnread.decode(fixture("definition"))))
    strike = t.column("strike_price").to_pylist()
    assert strike == [None]  # a future has no strike: UNDEF_PRICE must not leak as 9.2e9
    assert np.isclose(t.column("min_price_increment")[0].as_py(), 0.25)


def test_prefetch_keeps_order_and_forwards_errors() -> None:
    from spymaster.layers.bronze import prefetch

    def gen(fail_at: int | None) -> Iterator[pa.RecordBatch]:
        for i in range(7):
            if i == fail_at:
                raise ValueError("decode failed")
            yield pa.record_batch({"i": [i]})

    assert [b.column(0)[0].as_py() for b in prefetch(gen(None))] == list(range(7))
    got: list[int] = []

    def consume() -> None:
        got.extend(b.column(0)[0].as_py() for b in prefetch(gen(4)))

    with pytest.raises(ValueError, match="decode failed"):
        consume()
    assert got == [0, 1, 2, 3]
    # A consumer that stops early does not leave the producer blocked
    it = prefetch(gen(None), depth=1)
    next(it)
    it.close()


def _frame_of_exactly(data: bytes, size: int) -> int:
    """The prefix length of ``data`` whose zstd frame (level 1) is exactly ``size`` bytes."""
    import zstandard

    c = zstandard.ZstdCompressor(level=1)
    lo, hi = 0, len(data)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(c.compress(data[:mid])) < size:
            lo = mid + 1
        else:
            hi = mid
    for p in range(lo - 400, lo + 400):
        if len(c.compress(data[:p])) == size:
            return p
    raise AssertionError("no prefix compresses to exactly that size")


def test_a_frame_ending_exactly_at_a_read_boundary_is_not_corrupt(tmp_path: Path) -> None:
    """Issue 12 #4: a valid multi-frame file whose first frame ends at exactly 1 MiB."""
    import datetime as _dt

    import zstandard

    from spymaster.lake import paths
    from spymaster.synth import generate_day

    # Given a generated MBP-10 file re-compressed as two frames, the first exactly 1 MiB long
    raw = generate_day(_dt.date(2026, 3, 10), scale=0.02, seed=1).files[
        paths.RawKind(paths.Product.FUT, "mbp-10")
    ]
    data = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    cut = _frame_of_exactly(data, dbnread._READ_BYTES)
    c = zstandard.ZstdCompressor(level=1)
    first = c.compress(data[:cut])
    assert len(first) == dbnread._READ_BYTES
    two = tmp_path / "two-frames.dbn.zst"
    two.write_bytes(first + c.compress(data[cut:]))
    one = tmp_path / "one-frame.dbn.zst"
    one.write_bytes(raw)
    # When both decode
    got = pa.Table.from_batches(list(dbnread.decode(two)))
    want = pa.Table.from_batches(list(dbnread.decode(one)))
    # Then every record is there, identical, and as many as DBNStore reads
    assert got.num_rows == want.num_rows == len(db.DBNStore.from_file(one).to_ndarray())
    assert got.equals(want)
    # and a frame ending at the last byte of any read also decodes (boundary at every frame)
    arrs = list(dbnread._stream(two, np.dtype(dbn.MBP10Msg._dtypes), 1 << 16, "two", read_bytes=len(first)))
    assert sum(len(a) for a in arrs) == want.num_rows
    # and chunks a caller keeps are never overwritten by later ones (buffers are reused only once let go)
    assert np.concatenate(arrs).tobytes() == db.DBNStore.from_file(one).to_ndarray().tobytes()
    let_go = [a.tobytes() for a in dbnread._stream(two, np.dtype(dbn.MBP10Msg._dtypes), 1 << 12, "two")]
    assert b"".join(let_go) == np.concatenate(arrs).tobytes()
