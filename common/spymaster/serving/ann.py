"""Search a partition too large for memory through the vector table's ANN index (``settings.ANN``).

* **One index, prefiltered.** The table has one cosine index on ``vector`` (``layers.index.
  ensure_ann_index``); a query asks it for the nearest rows with ``partition = key AND date <
  as_of AND label IS NOT NULL`` applied *before* the search (a prefilter), so every candidate is of
  the query's partition, strictly before ``as_of`` and labelled at the horizon. Why one index and
  not one per partition: docs/ARCHITECTURE.md "Scale".
* **The served version, not the latest.** The table is checked out at the version the in-memory
  metadata was loaded from, so the index and the answer's labels, base rates and prior describe
  the same rows; a newer version is searched only once the snapshot has moved to it.
* **Exact re-ranking.** ``ANN.pool`` × k candidates come back with their full vectors and are
  ranked exactly with the request's group weights and the day cap (``retrieval.rank``, which also
  drops anything on or after ``as_of`` again); the pool grows ×4 while fewer than k are kept.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from spymaster import vectors
from spymaster.errors import NotFoundError
from spymaster.lake import Lake
from spymaster.layers.index import open_table
from spymaster.retrieval import Hits, Index, Partition, rank
from spymaster.sessions import from_day_number
from spymaster.settings import AnnSearch

F32 = npt.NDArray[np.float32]


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


class AnnSearcher:
    """The vector table at the served version, searched through its ANN index; thread-safe."""

    def __init__(self, lake: Lake, ann: AnnSearch) -> None:
        self.lake = lake
        self.ann = ann
        self._lock = threading.Lock()
        self._tables: dict[int | None, Any] = {}

    def _at(self, version: int | None) -> Any:
        """The table checked out at ``version``; the two newest versions stay open, so requests
        still answering from the previous snapshot during a reload do not reopen it."""
        with self._lock:
            table = self._tables.get(version)
            if table is None:
                table = open_table(self.lake)
                if table is None:
                    raise NotFoundError("the vector table is missing: no ANN search possible")
                if version is not None:
                    table.checkout(version)
                self._tables[version] = table
                while len(self._tables) > 2:
                    self._tables.pop(next(iter(self._tables)))
            return table

    def vector(self, index: Index, part: Partition, episode_id: str) -> F32:
        """An episode's stored vector (its partition's vectors are not in memory)."""
        got = (
            self._at(index.version)
            .search()
            .where(f"partition = {_quote(part.key)} AND episode_id = {_quote(episode_id)}")
            .select(["vector"])
            .limit(1)
            .to_arrow()
        )
        if got.num_rows == 0:
            raise NotFoundError(f"episode {episode_id!r} not found in the vector table")
        out: F32 = vectors.vectors_from_arrow(got.column("vector"))[0]
        return out

    def hits(
        self,
        index: Index,
        part: Partition,
        query_vec: npt.ArrayLike,
        *,
        as_of_day: int,
        k: int,
        max_per_day: int,
        horizon: int,
        dim_weights: F32 | None,
    ) -> Hits:
        """The top-``k`` rows of ``part`` before ``as_of_day`` as :func:`retrieval.search` would
        rank them, among the candidates the index returns (see the module doc)."""
        q = np.asarray(query_vec, dtype=np.float32).reshape(-1)
        direction = q * dim_weights if dim_weights is not None else q
        code = index.keys.index(part.key)
        where = (
            f"partition = {_quote(part.key)} AND date < date '{from_day_number(as_of_day).isoformat()}'"
            f" AND label_{horizon}m IS NOT NULL"
        )
        table = self._at(index.version)
        limit = max(k * self.ann.pool, k + 16)
        while True:
            if not np.any(direction):
                got_ids: list[str] = []
                got_vec = np.zeros((0, q.size), np.float32)
                n_got = 0
            else:
                search = (
                    table.search(direction, vector_column_name="vector")
                    .distance_type("cosine")
                    .where(where, prefilter=True)
                    .nprobes(self.ann.nprobes)
                    .refine_factor(self.ann.refine_factor)
                    .limit(limit)
                    .select(["episode_id", "vector"])
                )
                if self.ann.index_type == "IVF_HNSW_SQ":
                    # ef bounds the graph's candidate list: at least what LanceDB refines
                    search = search.ef(max(limit * max(1, self.ann.refine_factor), 64))
                got = search.to_arrow()
                got_ids = got.column("episode_id").to_pylist()
                got_vec = vectors.vectors_from_arrow(got.column("vector"))
                n_got = got.num_rows
            rows = self._rows(index, code, got_ids)
            hits = rank(
                part,
                rows,
                got_vec,
                q,
                as_of_day=as_of_day,
                k=k,
                max_per_day=max_per_day,
                horizon=horizon,
                dim_weights=dim_weights,
            )
            if hits.rows.size >= k or n_got < limit or limit >= hits.candidates:
                return hits
            limit *= 4

    @staticmethod
    def _rows(index: Index, code: int, ids: list[str]) -> npt.NDArray[np.int64]:
        """Partition rows of episode ids (−1 for an id the served metadata does not hold)."""
        if not ids:
            return np.zeros(0, np.int64)
        want = np.asarray(ids, dtype=np.str_)
        pos = np.minimum(np.searchsorted(index.ids, want), max(0, index.ids.size - 1))
        ok = (index.ids[pos] == want) & (index.id_part[pos] == code)
        out: npt.NDArray[np.int64] = np.where(ok, index.id_row[pos], -1).astype(np.int64)
        return out
