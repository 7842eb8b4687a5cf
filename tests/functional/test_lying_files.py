"""Files that lie and values that cannot be (issue 12 #2, #3), on a local lake and on S3 over
HTTP: a file whose records are not the session its metadata claims is refused and quarantined with
the good day intact; implausible prices, sizes and duplicates are dropped and counted, or the file
is quarantined above 1 %; a re-run that would empty or gut a committed partition stops."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import databento_dbn as dbn
import numpy as np
import pytest
import zstandard

from spymaster.errors import ImplausibleInputError, ShrinkError
from spymaster.lake import Lake, paths, quarantine, read_committed, read_manifest
from spymaster.lake.paths import Layer, Product, RawKind
from spymaster.lake.status import collect
from spymaster.layers import bronze, index, pipeline
from spymaster.raw import quality
from spymaster.synth import generate

D0, D1 = dt.date(2026, 3, 9), dt.date(2026, 3, 10)
TRADES = RawKind(Product.FUT, "trades")
DTYPE = np.dtype(dbn.TradeMsg._dtypes)
DAY_NS = 86_400 * 10**9


def _split(zst: bytes) -> tuple[bytes, np.ndarray[Any, Any]]:
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(zst)
    n = 8 + int.from_bytes(raw[4:8], "little")
    return raw[:n], np.frombuffer(raw[n:], dtype=DTYPE).copy()


def _join(header: bytes, recs: np.ndarray[Any, Any]) -> bytes:
    return zstandard.ZstdCompressor().compress(header + recs.tobytes())


@pytest.fixture
def built(lake: Lake) -> Lake:
    """Two generated days built to gold and indexed."""
    dates = generate(lake, D0, 2, scale=0.02, seed=81, progress=False)
    assert dates == [D0, D1]
    assert all(r.ok for r in pipeline.run(lake.settings, dates))
    index.index(lake)
    return lake


def _snapshot(lake: Lake, d: dt.date) -> tuple[dict[str, str], list[str]]:
    runs = {t: read_manifest(lake, Layer.BRONZE, t, d).run_id for t in paths.BRONZE_TABLES}
    runs["gold"] = read_manifest(lake, Layer.GOLD, paths.EPISODES_TABLE, d).run_id
    ids = index.read_all(lake, ["episode_id"], where=f"date = date '{d.isoformat()}'")
    return runs, sorted(ids.column("episode_id").to_pylist())


def _lies() -> dict[str, Callable[[bytes, bytes], bytes]]:
    def other_days_records(good: bytes, other: bytes) -> bytes:
        header, _ = _split(good)
        return _join(header, _split(other)[1])  # D0's trades under D1's metadata

    def shifted_a_week(good: bytes, other: bytes) -> bytes:
        header, r = _split(good)
        r["ts_event"] -= np.uint64(7 * DAY_NS)
        r["ts_recv"] -= np.uint64(7 * DAY_NS)
        return _join(header, r)

    def unknown_instruments(good: bytes, other: bytes) -> bytes:
        header, r = _split(good)
        r["instrument_id"] = 987_654
        return _join(header, r)

    return {
        "other-days-records": other_days_records,
        "shifted-a-week": shifted_a_week,
        "unknown-instruments": unknown_instruments,
    }


@pytest.mark.parametrize("lie", list(_lies()))
def test_a_lying_file_is_refused_and_the_good_day_stays(built: Lake, lie: str) -> None:
    lake = built
    key = paths.raw_file(TRADES, D1)
    before = _snapshot(lake, D1)
    assert before[1]
    # Given D1's trades replaced by a file whose records lie about it
    lake.write_bytes(key, _lies()[lie](lake.read_bytes(key), lake.read_bytes(paths.raw_file(TRADES, D0))))
    # When the pipeline runs (the raw file changed, so bronze is rebuilt)
    (res,) = pipeline.run(lake.settings, [D1])
    index.index(lake)
    # Then the date fails at bronze with the reason, the file is quarantined, and every committed
    # layer and the vector table still hold the good day
    assert not res.ok
    assert res.failed_stage == "bronze"
    assert "ImplausibleInputError" not in (res.error or "")
    assert "records implausible" in (res.error or "")
    assert _snapshot(lake, D1) == before
    assert not lake.exists(key)
    (q,) = quarantine.list_all(lake, current=True)
    assert q.error == "ImplausibleInputError"
    assert q.date == D1.isoformat()
    rec = lake.read_json(paths.quality_file(TRADES.bronze_table, D1))
    assert rec["refused"] is True


def test_ingest_refuses_records_outside_the_files_window(built: Lake, tmp_path: Any) -> None:
    from spymaster.raw.ingest import ingest

    lake = built
    good = lake.read_bytes(paths.raw_file(TRADES, D1))
    lying = tmp_path / "lying.dbn.zst"
    lying.write_bytes(_lies()["other-days-records"](good, lake.read_bytes(paths.raw_file(TRADES, D0))))
    placed, refused, _unused = ingest(lake, [lying], force=True)
    assert placed == []
    assert "outside window" in str(refused[0])
    assert lake.read_bytes(paths.raw_file(TRADES, D1)) == good


# -- the value-fault corpus ---------------------------------------------------------------------


def _corrupt(which: str, r: np.ndarray[Any, Any], rng: np.random.Generator) -> None:
    n = len(r)
    few = rng.choice(n, size=max(1, n // 400), replace=False)  # 0.25 %: dropped and counted
    many = rng.choice(n, size=n // 20, replace=False)  # 5 %: the file is refused
    if which == "zero-prices":
        r["price"][few] = 0
    elif which == "negative-prices":
        r["price"][few] = -r["price"][few]
    elif which == "huge-prices":
        r["price"][few] = np.iinfo(np.int64).max - 1
    elif which == "off-median-prices":  # inside the static limits, 40 % below the session
        r["price"][few] = (r["price"][few] * 0.6).astype(np.int64)
    elif which == "huge-sizes":
        r["size"][few] = 2**32 - 1
    elif which == "zero-sizes":
        r["size"][few] = 0
    elif which == "many-zero-prices":
        r["price"][many] = 0
    elif which == "all-zero-prices":
        r["price"][:] = 0
    else:
        raise AssertionError(which)


CORPUS = {
    # case: (expected outcome, reason counted)
    "zero-prices": ("dropped", "price_out_of_limits"),
    "negative-prices": ("dropped", "price_out_of_limits"),
    "huge-prices": ("dropped", "price_out_of_limits"),
    "off-median-prices": ("dropped", "price_off_median"),
    "huge-sizes": ("dropped", "size_out_of_bounds"),
    "zero-sizes": ("dropped", "size_out_of_bounds"),
    "many-zero-prices": ("refused", "price_out_of_limits"),
    "all-zero-prices": ("refused", "price_out_of_limits"),
    "every-record-twice": ("refused", "duplicate"),
    "a-few-duplicates": ("dropped", "duplicate"),
}


@pytest.mark.parametrize("case", list(CORPUS))
def test_value_fault_corpus(lake: Lake, case: str) -> None:
    # Given a generated day's trades with one kind of implausible value planted
    (d,) = generate(lake, D1, 1, scale=0.02, seed=82, progress=False)
    key = paths.raw_file(TRADES, d)
    header, r = _split(lake.read_bytes(key))
    n = len(r)
    rng = np.random.default_rng(0)
    if case == "every-record-twice":
        r = np.repeat(r, 2)
    elif case == "a-few-duplicates":
        extra = np.sort(rng.choice(n, size=n // 400, replace=False))
        r = np.insert(r, extra + 1, r[extra])
    else:
        _corrupt(case, r, rng)
    lake.write_bytes(key, _join(header, r))
    outcome, reason = CORPUS[case]
    if outcome == "dropped":
        # Then the bad records are dropped, counted by reason, and the rest committed
        res = bronze.build(lake, TRADES, d)
        dropped = res.manifest.stats["quality"]["dropped"]
        assert set(dropped) == {reason}, dropped
        assert res.rows == len(r) - dropped[reason]
        assert res.rows >= n * 0.99
        rec = lake.read_json(paths.quality_file(TRADES.bronze_table, d))
        assert rec["dropped"] == dropped
        assert rec["refused"] is False
        (s,) = [s for s in collect(lake) if s.date == d]
        assert s.dropped == {TRADES.bronze_table: dropped}
        t = read_committed(lake, Layer.BRONZE, TRADES.bronze_table, d)
        px = t.column("price").to_numpy()
        med = float(np.median(px))
        assert px.min() > med * (1 - quality.BAND)
        assert px.max() < med * (1 + quality.BAND)
        assert t.column("size").to_numpy().min() >= 1
        assert t.column("size").to_numpy().max() <= quality.MAX_TRADE_SIZE
    else:
        # Then the file is refused, quarantined with the counts, and nothing is committed
        with pytest.raises(ImplausibleInputError, match="records implausible") as err:
            bronze.build(lake, TRADES, d)
        assert reason.replace("_", " ") in str(err.value)
        assert not lake.exists(key)
        assert [q.schema for q in quarantine.list_all(lake, current=True)] == ["trades"]
        assert lake.read_json(paths.quality_file(TRADES.bronze_table, d))["refused"] is True


def test_a_day_with_a_few_zero_prices_keeps_sane_levels(local_lake: Lake) -> None:
    """The issue's case: 50 trades at price 0 made PM_LOW 0 and ATR 1 739; now they are dropped."""
    lake = local_lake
    (d,) = generate(lake, D1, 1, scale=0.02, seed=83, progress=False)
    key = paths.raw_file(TRADES, d)
    header, r = _split(lake.read_bytes(key))
    r["price"][np.random.default_rng(1).choice(len(r), size=50, replace=False)] = 0
    lake.write_bytes(key, _join(header, r))
    (res,) = pipeline.run(lake.settings, [d])
    assert res.ok, res.error
    levels = read_committed(lake, Layer.SILVER, "levels", d)
    px = [n for n in levels.column_names if levels.schema.field(n).type == "double" and n != "atr"]
    assert px
    for name in px:
        col = levels.column(name).to_numpy(zero_copy_only=False)
        col = col[~np.isnan(col)]
        assert col.size == 0 or col.min() > 1000, name
    if "atr" in levels.column_names:  # ATR in points stays a few points, not hundreds
        atr = levels.column("atr").to_numpy(zero_copy_only=False)
        assert np.nanmax(atr) < 50


# -- shrinking re-runs ---------------------------------------------------------------------------


def test_a_rerun_that_would_gut_a_partition_stops_unless_allowed(built: Lake) -> None:
    lake = built
    key = paths.raw_file(TRADES, D1)
    before = _snapshot(lake, D1)
    # Given a plausible but tiny replacement: the first 2 % of the day's trades
    header, r = _split(lake.read_bytes(key))
    lake.write_bytes(key, _join(header, r[: len(r) // 50]))
    # When the pipeline runs, it stops at bronze and says why; nothing changes, nothing quarantined
    (res,) = pipeline.run(lake.settings, [D1])
    assert not res.ok
    assert "would shrink" in (res.error or "")
    assert "--allow-shrink" in (res.error or "")
    assert _snapshot(lake, D1) == before
    assert quarantine.list_all(lake) == []
    # And with allow_shrink it goes through
    with pytest.raises(ShrinkError):
        bronze.build(lake, TRADES, D1)
    assert bronze.build(lake, TRADES, D1, allow_shrink=True).rows == len(r) // 50
