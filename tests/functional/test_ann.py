"""The ANN path (issue 16): a partition above ``AnnSearch.min_rows`` is answered through the vector
table's ANN index, with recall@50 against exact search on the same rows, and as-of safe; one below
it stays exact in memory. Real LanceDB tables, on a local folder and on S3 (moto over HTTP)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from spymaster import vectors
from spymaster.lake import Lake, paths
from spymaster.layers import gold, index
from spymaster.outcomes import OUTCOMES
from spymaster.partitions import partition_key
from spymaster.serving import Service
from spymaster.settings import AnnSearch

BIG = ("PM_HIGH", "UP", 1)
SMALL = ("OR_LOW", "DOWN", 2)
DAYS = [dt.date(2026, 1, 5) + dt.timedelta(days=i) for i in range(60)]
# nprobes well below the lists (≈ 50): the index has to find the neighbours, not scan everything
ANN = AnnSearch(min_rows=1_000, index_type="IVF_HNSW_SQ", nprobes=8, refine_factor=4, pool=4)
EXACT = AnnSearch(min_rows=None)


def _clustered(rng: np.random.Generator, n: int) -> np.ndarray:
    """Vectors with neighbourhoods (40 centres in a 16-dim subspace, plus noise), as states have."""
    dim = vectors.VECTOR_DIM
    basis = np.linalg.qr(rng.standard_normal((dim, 16)))[0].T
    centres = rng.standard_normal((40, 16)) * 2.0
    low = centres[rng.integers(0, 40, n)] + rng.standard_normal((n, 16))
    return (low @ basis + 0.3 * rng.standard_normal((n, dim))).astype(np.float32)


def _rows(rng: np.random.Generator, part: tuple[str, str, int], per_day: int) -> pa.Table:
    kind, direction, bucket = part
    n = per_day * len(DAYS)
    dates = [d for d in DAYS for _ in range(per_day)]
    ts = [
        int(dt.datetime.combine(d, dt.time(15, 0), dt.UTC).timestamp() * 1e9) + 30_000_000_000 * (i % per_day)
        for i, d in enumerate(dates)
    ]
    vec = _clustered(rng, n)
    labels = np.asarray(OUTCOMES)[rng.integers(0, 3, n)].tolist()
    labels = [None if i % 17 == 0 else lab for i, lab in enumerate(labels)]  # some unlabelled rows
    exc = rng.exponential(1.0, n)
    cols: dict[str, Any] = {
        "episode_id": [gold.episode_id(d, kind, direction, t) for d, t in zip(dates, ts, strict=True)],
        "date": pa.array(dates, pa.date32()),
        "ts": pa.array(ts, pa.timestamp("ns", tz="UTC")),
        "level_kind": [kind] * n,
        "direction": [direction] * n,
        "time_bucket": pa.array([bucket] * n, pa.int8()),
        "partition": [partition_key(kind, direction, bucket)] * n,
        "level_price": [5000.0] * n,
        "anchor_reason": ["APPROACH"] * n,
        "stats_version": ["s1"] * n,
        "vector": vectors.vectors_to_arrow(vec),
        "raw": pa.array(vec.tolist(), pa.list_(pa.float32())),
    }
    for c in ("label", "label_2m", "label_4m", "label_8m", "label_20m"):
        cols[c] = labels
    for c in ("mfe_2m", "mfe_4m", "mfe_8m", "mfe_20m", "mae_2m", "mae_4m", "mae_8m", "mae_20m"):
        cols[c] = exc
    sch = index.schema()
    return pa.table(
        {f.name: pa.array(cols[f.name], f.type) if f.name in cols else pa.nulls(n, f.type) for f in sch},
        schema=sch,
    )


def _table(lake: Lake, ann: AnnSearch = ANN) -> pa.Table:
    rng = np.random.default_rng(7)
    rows = pa.concat_tables([_rows(rng, BIG, 40), _rows(rng, SMALL, 3)])  # 2,400 and 180 rows
    table = index.open_table(lake, create=True)
    assert table is not None
    table.add(rows)
    index.ensure_indexes(lake, ann=ann)  # what the indexer calls after a write
    return rows


def _vector_query(svc: Service, q: np.ndarray, part: tuple[str, str, int], as_of: dt.date) -> dict[str, Any]:
    kind, direction, bucket = part
    return svc.similar(
        vector=q.tolist(),
        partition={"level_kind": kind, "direction": direction, "time_bucket": bucket},
        as_of=as_of,
    )


@pytest.mark.parametrize("kind", ["IVF_PQ", "IVF_HNSW_SQ"])
def test_above_the_threshold_ann_answers_with_recall_below_it_exact(lake: Lake, kind: str) -> None:
    # Given a table with one partition above the (test) threshold and one below, indexed
    ann_settings = replace(ANN, index_type=kind)
    rows = _table(lake, ann_settings)
    built = index.open_table(lake)
    assert built is not None
    assert [i.columns for i in built.list_indices() if i.columns == ["vector"]] == [["vector"]]
    marker = lake.read_json(paths.VECTOR_ANN)
    assert marker["rows"] == rows.num_rows
    assert marker["index_type"] == kind
    assert index.ensure_ann_index(lake, built, ann_settings) is False  # idempotent: nothing to rebuild
    assert index.ensure_ann_index(lake, built, EXACT) is False  # no partition above: no index needed
    ann, exact = Service(lake, ann=ann_settings), Service(lake, ann=EXACT)

    # When 20 queries near stored states are asked of both
    rng = np.random.default_rng(3)
    vec = vectors.vectors_from_arrow(rows.column("vector"))
    big = np.flatnonzero(np.asarray(rows.column("partition").to_pylist()) == partition_key(*BIG))
    recall: list[float] = []
    for i in rng.choice(big, 20, replace=False).tolist():
        q = vec[i] + 0.1 * rng.standard_normal(vec.shape[1]).astype(np.float32)
        as_of = DAYS[int(rng.integers(30, 60))]
        a, e = _vector_query(ann, q, BIG, as_of), _vector_query(exact, q, BIG, as_of)
        # Then the big partition is answered by the ANN index, the exact service searched in memory
        assert a["query"]["search"] == "ann"
        assert e["query"]["search"] == "exact"
        got = {n["episode_id"] for n in a["neighbours"]}
        want = {n["episode_id"] for n in e["neighbours"]}
        assert len(want) == 50
        assert len(got) == 50
        recall.append(len(got & want) / len(want))
        # the same metadata behind both: base rate and its sample agree exactly
        assert a["distribution"]["base_n"] == e["distribution"]["base_n"]
        assert all(n["date"] < as_of.isoformat() for n in a["neighbours"])
        # and the day cap holds on the ANN path as on the exact one
        per_day = np.unique([n["date"] for n in a["neighbours"]], return_counts=True)[1]
        assert per_day.max() <= 2
    assert float(np.mean(recall)) >= 0.95, recall

    # Below the threshold the same service searches exactly, and agrees with the exact service
    q = vec[-1]
    a, e = _vector_query(ann, q, SMALL, DAYS[50]), _vector_query(exact, q, SMALL, DAYS[50])
    assert a["query"]["search"] == "exact"
    assert a["neighbours"] == e["neighbours"]

    # An episode of the big partition as the query: its vector comes from the table
    eid = rows.column("episode_id")[int(big[-1])].as_py()
    a, e = ann.similar(episode_id=eid), exact.similar(episode_id=eid)
    assert a["query"]["search"] == "ann"
    overlap = {n["episode_id"] for n in a["neighbours"]} & {n["episode_id"] for n in e["neighbours"]}
    assert len(overlap) >= 0.9 * len(e["neighbours"])


def test_ann_path_has_no_lookahead(lake: Lake) -> None:
    # Given an answer through the ANN index as of a date
    rows = _table(lake)
    as_of = DAYS[40]
    vec = vectors.vectors_from_arrow(rows.column("vector"))
    q = vec[5]
    before = _vector_query(Service(lake, ann=ANN), q, BIG, as_of)
    assert before["query"]["search"] == "ann"

    # When every row of the partition dated on or after as_of becomes a perfect match labelled BREAK
    table = index.open_table(lake)
    assert table is not None
    later = rows.filter(
        pa.compute.and_(
            pa.compute.equal(rows.column("partition"), partition_key(*BIG)),
            pa.compute.greater_equal(rows.column("date"), pa.scalar(as_of, pa.date32())),
        )
    )
    n = later.num_rows
    fake = np.repeat(q[None, :], n, axis=0)
    later = later.set_column(later.schema.get_field_index("vector"), "vector", vectors.vectors_to_arrow(fake))
    for c in ("label", "label_2m", "label_4m", "label_8m", "label_20m"):
        later = later.set_column(later.schema.get_field_index(c), c, pa.array(["BREAK"] * n, pa.string()))
    table.merge_insert("episode_id").when_matched_update_all().execute(later)
    index.ensure_indexes(lake, ann=ANN)  # the indexer's compaction adds the altered rows to the index
    index.refresh_snapshot(lake)

    # Then the answer as of that date is unchanged, on a new table version
    svc = Service(lake, ann=ANN)
    after = _vector_query(svc, q, BIG, as_of)
    assert after["query"]["table_version"] != before["query"]["table_version"]
    assert after["neighbours"] == before["neighbours"]
    assert after["distribution"] == before["distribution"]
    # and the alteration is visible to a later as_of, so the test could fail
    later_answer = _vector_query(svc, q, BIG, DAYS[-1])
    assert later_answer["query"]["search"] == "ann"
    assert {n["date"] for n in later_answer["neighbours"]} & {d.isoformat() for d in DAYS[40:]}
    assert all(n["similarity"] > 0.999 for n in later_answer["neighbours"][:20])


def test_the_index_is_retrained_when_the_table_has_grown(local_lake: Lake) -> None:
    lake = local_lake
    _table(lake)
    table = index.open_table(lake)
    assert table is not None
    first = lake.read_json(paths.VECTOR_ANN)
    rng = np.random.default_rng(11)
    extra = _rows(rng, ("SMA_90", "UP", 3), 40)
    extra = extra.set_column(
        0, "episode_id", pa.array([f"x{i:06d}" for i in range(extra.num_rows)], pa.string())
    )
    table.add(
        pa.concat_tables(
            [extra, extra.set_column(0, "episode_id", pa.array([f"y{i:06d}" for i in range(extra.num_rows)]))]
        )
    )
    assert index.ensure_ann_index(lake, table, AnnSearch(min_rows=1_000, retrain_growth=2.0)) is True
    assert lake.read_json(paths.VECTOR_ANN)["rows"] == first["rows"] + 2 * extra.num_rows
