"""The gold job on a local lake built by the generator → bronze → silver → gold: committed episodes,
idempotent re-runs, the planted truth recovered, and normalisation statistics from earlier days."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spymaster import outcomes, vectors
from spymaster.lake import Lake, committed_dates, paths, read_manifest
from spymaster.lake.paths import Layer
from spymaster.layers import bronze, gold, silver
from spymaster.settings import StorageSettings
from spymaster.synth import generate

START = dt.date(2026, 3, 5)  # Thu, Fri, and the Monday after the DST change
N_DAYS = 3
NS = 1_000_000_000


@dataclass
class Built:
    lake: Lake
    dates: list[dt.date]
    first: dict[dt.date, pa.Table]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    lake = Lake(StorageSettings(lake_uri=str(tmp_path_factory.mktemp("gold") / "lake")))
    dates = generate(lake, START, N_DAYS, scale=0.01, seed=7, progress=False)
    first = {}
    for date in dates:
        for kind in paths.RAW_KINDS:
            bronze.build(lake, kind, date)
        silver.build(lake, date)
        first[date] = gold.build(lake, date)
    return Built(lake=lake, dates=dates, first=first)


def test_gold_is_committed_per_date(built: Built) -> None:
    lake = built.lake
    assert committed_dates(lake, Layer.GOLD, paths.EPISODES_TABLE) == built.dates
    for date in built.dates:
        m = read_manifest(lake, Layer.GOLD, paths.EPISODES_TABLE, date)
        assert all(f.startswith(f"gold/episodes/date={date.isoformat()}/") for f in m.files)
        ep = gold.read_episodes(lake, date)
        assert ep.num_rows == m.rows > 50
        assert ep.schema.equals(gold.EPISODE_SCHEMA)
        assert pq.read_schema(lake.path(m.files[0])).field("vector").type == pa.list_(
            pa.float32(), vectors.VECTOR_DIM
        )
        assert set(ep.column("date").to_pylist()) == {date}
        assert m.stats["vector_layout"] == vectors.LAYOUT_VERSION
        assert sum(m.stats["labels"].values()) <= m.rows
        assert set(m.inputs) == {"silver_state_run", "silver_levels_run", "silver_bars_30s_run"}
        # all 60 partition keys are well-formed
        assert set(ep.column("direction").to_pylist()) <= {"UP", "DOWN"}
        assert set(ep.column("time_bucket").to_pylist()) <= set(range(5))
        assert len(set(ep.column("episode_id").to_pylist())) == ep.num_rows


def _same(a: pa.Table, b: pa.Table) -> None:
    assert a.column_names == b.column_names
    assert a.column("episode_id").to_pylist() == b.column("episode_id").to_pylist()
    va, vb = vectors.vectors_from_arrow(a.column("vector")), vectors.vectors_from_arrow(b.column("vector"))
    assert va.tobytes() == vb.tobytes()
    pd.testing.assert_frame_equal(a.drop(["vector"]).to_pandas(), b.drop(["vector"]).to_pandas())


def test_running_gold_twice_gives_the_same_rows_and_ids(built: Built) -> None:
    lake = built.lake
    date = built.dates[0]
    run1 = read_manifest(lake, Layer.GOLD, paths.EPISODES_TABLE, date).run_id
    again = gold.build(lake, date)
    m = read_manifest(lake, Layer.GOLD, paths.EPISODES_TABLE, date)
    assert m.run_id != run1
    _same(built.first[date], again)
    _same(built.first[date], gold.read_episodes(lake, date))
    # the previous run's file is gone: exactly one data file in the partition
    assert lake.list_files(paths.table_dir(Layer.GOLD, paths.EPISODES_TABLE, date)) == m.files


def _truth(lake: Lake, date: dt.date) -> pd.DataFrame:
    return pq.read_table(lake.path(paths.truth_file(date))).to_pandas()


def test_planted_truth_has_matching_episodes_and_labels_agree(built: Built) -> None:
    rows = []
    for date in built.dates:
        ep = gold.read_episodes(built.lake, date).drop(["vector"]).to_pandas()
        ep["t"] = ep["ts"].astype("int64")
        for r in _truth(built.lake, date).itertuples():
            same_kind = ep[ep["level_kind"] == r.level_kind]
            near = (same_kind["t"] - r.arrival_ts).abs() <= 3 * 60 * NS
            # the question asked last before price reached the level: the latest episode of the
            # same level and approach direction within 4 minutes before arrival
            asked = same_kind[
                (same_kind["direction"] == r.direction)
                & (same_kind["t"] <= r.arrival_ts)
                & (same_kind["t"] >= r.arrival_ts - 4 * 60 * NS)
            ].tail(1)
            rows.append(
                {
                    "truth": r.outcome,
                    "near": bool(near.any()),
                    "label": asked["label"].iloc[0] if len(asked) else None,
                }
            )
    df = pd.DataFrame(rows)
    assert len(df) >= 30
    assert df["near"].mean() >= 0.9  # most arrivals have an episode on the same level kind
    m = df[df["label"].notna()]
    assert len(m) >= 0.9 * len(df)
    agree = float((m["label"] == m["truth"]).mean())
    pt = m["truth"].value_counts(normalize=True)
    pl = m["label"].value_counts(normalize=True)
    chance = float(sum(pt.get(k, 0.0) * pl.get(k, 0.0) for k in outcomes.OUTCOMES))
    kappa = (agree - chance) / (1 - chance)
    print(
        f"\ntruth interactions {len(df)}, with an episode within 3 min {df['near'].mean():.3f}, "
        f"matched {len(m)}; label agreement {agree:.3f} vs chance {chance:.3f} (kappa {kappa:.2f})"
    )
    assert agree >= 0.8
    assert kappa >= 0.6


def test_normalisation_statistics_come_from_earlier_dates(built: Built) -> None:
    lake = built.lake
    d1, d2, d3 = built.dates
    s1 = vectors.stats_for_date(lake, d1)
    assert s1.fallback  # no earlier gold: the documented identity fallback
    assert s1.window == ()
    s3 = vectors.stats_for_date(lake, d3)
    assert not s3.fallback
    assert s3.window == (d1.isoformat(), d2.isoformat())
    assert s3.n_rows == built.first[d1].num_rows + built.first[d2].num_rows
    assert lake.exists(paths.stats_file(s3.version))
    assert vectors.load_stats(lake, s3.version) == s3
    assert vectors.stats_for_date(lake, d3).version == s3.version  # stable
    z = vectors.apply(s3, vectors.vectors_from_arrow(gold.read_episodes(lake, d3).column("vector")))
    assert z.dtype == np.float32
    assert np.isfinite(z).all()
    assert np.abs(z).max() <= 5.0
    # a later date's gold does not change an earlier date's statistics
    assert vectors.stats_for_date(lake, d2, save=False).window == (d1.isoformat(),)


def test_gold_needs_committed_silver(tmp_path: Path) -> None:
    from spymaster.errors import NotCommittedError

    lake = Lake(StorageSettings(lake_uri=str(tmp_path / "empty")))
    with pytest.raises(NotCommittedError):
        gold.build(lake, START)
    assert committed_dates(lake, Layer.GOLD, paths.EPISODES_TABLE) == []
