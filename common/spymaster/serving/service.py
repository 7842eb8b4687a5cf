"""The I/O side of the API: :class:`Service`, the one object the routes talk to.

It is assembled from one class per concern, each in its own module: the vector table's snapshot
(:mod:`.snapshot`), a date's silver and the day answers (:mod:`.days`), query vectors, the
similarity answer and signals (:mod:`.query`), and the evaluation report (:mod:`.reports`).

* **The vector table** is read whole into :class:`retrieval.Index` partitions once per LanceDB
  table version, from the indexer's snapshot of it (one GET, no LanceDB import; the table itself
  only on a lake without one). The version is checked at most every ``table_check_seconds``
  (default 10 s; a HEAD of the snapshot, else ``checkout_latest`` on the open table); a changed
  version is reloaded by one thread while the others keep answering from the previous version.
  The API never writes. A partition of more than ``ANN.min_rows`` rows keeps only its metadata in
  memory and is searched through the table's ANN index at the served version (:mod:`.ann`); the
  answer says which search answered (``query.search``: ``exact`` or ``ann``).
* **A date's silver** (state, levels, 2-minute bars) is read through the lake into a small LRU
  cache keyed by date; an entry is revalidated against its ``state`` manifest's run id at most
  every ``table_check_seconds``, so a re-run silver date is picked up.
* **Query vectors at an instant** are built exactly as the pipeline builds an episode's: the
  date's silver state → ``vectors.build_vectors`` for that (ts, level_kind) → ``vectors.apply``
  with the statistics version of that date (the version stored on the date's indexed rows, else
  ``stats_for_date(..., save=False)``, fitted on earlier dates only).
* **As-of safety.** Every neighbour comes from a date strictly before ``as_of``; ``as_of``
  defaults to the query's date and may not be later than it (that would let the query date's own
  outcomes, or later ones, in). The pooled prior counts only rows dated strictly before ``as_of``
  too (``Index.pooled_counts``).
* **The estimator** is the evaluation's recommendation, set in one place
  (:mod:`spymaster.retrieval.calibration`): ``SERVED_PARAMS`` (the partition base rate shrunk toward the
  pooled split of all partitions with 100 pseudo-counts, the interval's Beta total capped at 2.5),
  ``SERVED.weights`` (``dealer`` 0; a request's weights override them group by group),
  ``SERVED.k`` and ``SERVED.max_per_day``.
* **The evaluation report** (``reports/evaluation/latest.json`` and the files it lists) is read
  from the lake per request (``latest.json`` is small) and served as JSON and files; only files
  named in ``latest.json`` and lying in its run's folder are ever read.

Answers are plain JSON-ready dicts in the API's contract (times ISO-8601 UTC with ``Z``; ET
wall-clock ``HH:MM:SS`` for neighbours' times). Domain errors are :class:`NotFoundError` and
:class:`InvalidQueryError` (:mod:`spymaster.errors`); :mod:`spymaster.api` maps them to HTTP statuses in one place.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from spymaster import vectors
from spymaster.lake import Lake
from spymaster.retrieval import Index, Params, calibration
from spymaster.serving.ann import AnnSearcher
from spymaster.serving.days import DayData
from spymaster.serving.query import (
    Queries,
)
from spymaster.serving.reports import (
    Reports,
)
from spymaster.serving.snapshot import _Snapshot
from spymaster.settings import ANN, SERVED, AnnSearch

log = logging.getLogger(__name__)


class Service(Queries, Reports):
    """Everything the routes need; thread-safe (uvicorn runs sync routes in a thread pool)."""

    def __init__(
        self,
        lake: Lake | None,
        *,
        table_check_seconds: float = 10.0,
        day_cache_size: int = 8,
        params: Params | None = None,
        weights: Mapping[str, float] | None = None,
        index: Index | None = None,
        stats_by_day: Mapping[int, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        ann: AnnSearch = ANN,
    ) -> None:
        self.lake = lake
        self.ann = ann
        self._ann_search = AnnSearcher(lake, ann) if lake is not None else None
        self.check_s = float(table_check_seconds)
        self.params = params or calibration.SERVED_PARAMS
        self.default_weights: dict[str, float] = dict(SERVED.weights if weights is None else weights)
        self._clock = clock
        self._fixed = index is not None
        self._snap: _Snapshot | None = (
            _Snapshot(index, dict(stats_by_day or {})) if index is not None else None
        )
        self._checked = -math.inf
        self._table: Any = None
        self._snap_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._day_lock = threading.Lock()
        self._days: OrderedDict[dt.date, DayData] = OrderedDict()
        self._day_cache_size = max(1, day_cache_size)
        self._cache_lock = threading.Lock()
        self._stats: OrderedDict[Any, vectors.Stats] = OrderedDict()
        self._signals: OrderedDict[Any, dict[str, Any]] = OrderedDict()
        self._signals_busy = threading.Semaphore(1)
        self._days_list: tuple[float, list[dict[str, Any]], int | None] | None = None
        self._report: tuple[bytes, dict[str, Any]] | None = None
        self._report_files: OrderedDict[str, bytes] = OrderedDict()
        self._learned = None
        self._learned_lock = threading.Lock()

    def refresh(self) -> int | None:
        """Check the vector table now and load a new version, then the fitted models for it.

        For a background thread (the live engine's refresher): other callers keep answering from
        the version in memory meanwhile. Returns the table version now served.
        """
        with self._reload_lock:
            snap = self._refresh(self._snap)
            with self._snap_lock:
                self._snap = snap
                self._checked = self._clock()
        self._learned_state()
        return snap.index.version
