"""The learned similarity's answer beside the partition kNN's (issue 11; docs/EVALUATION.md).

The fitted models (``models/similarity/``, written by ``spymaster fit``) and the approach rows of
the vector table are read once per table version (the model index at most every
``table_check_seconds``). A query as of day D uses the model fitted for the latest date ≤ D (fitted
on days before that date) and searches only history rows dated before D. The answer names its
model version and carries the out-of-sample evidence of that model at the query's level kind.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from spymaster.layers import models as model_job
from spymaster.retrieval.metric import SetupModel
from spymaster.retrieval.walkforward import Rows, beta_interval, logit_interval
from spymaster.serving.days import et_time
from spymaster.serving.snapshot import TableSnapshots
from spymaster.sessions import day_number, from_day_number
from spymaster.settings import LEARNED

log = logging.getLogger(__name__)

NO_EDGE_AUC = 0.55
"""Below this out-of-sample AUC (or at a skill ≤ 0) a level kind is shown as "no measured edge"."""


@dataclass
class _Learned:
    table_version: int | None
    rows: Rows
    index: dict[str, Any] | None
    checked: float
    models: dict[str, tuple[SetupModel, npt.NDArray[np.float32], npt.NDArray[np.float32]]] = field(
        default_factory=dict
    )
    """model version → (model, embedded history rows as float32, their squared norms)."""
    hashes: dict[int, str] = field(default_factory=dict)
    """id of a held model → its content hash (:attr:`SetupModel.version`: hashing the model's
    JSON costs ~2 ms, on a live answer's path), computed once per loaded model."""


def _verdict(ev: dict[str, float] | None) -> str:
    if not ev or "auc" not in ev:
        return "not yet measured (too few earlier answers)"
    if ev["auc"] < NO_EDGE_AUC or ev.get("skill", 0.0) <= 0:
        return "no measured edge"
    return f"AUC {ev['auc']:.2f}, Brier skill {100 * ev['skill']:.0f} % out of sample"


class LearnedAnswers(TableSnapshots):
    """Mixin: the learned-similarity answer for a raw query vector."""

    _learned: _Learned | None
    _learned_lock: threading.Lock

    def _learned_state(self) -> _Learned:
        idx = self.index()
        cur = self._learned
        now = self._clock()
        if cur is not None and cur.table_version == idx.version and now - cur.checked < self.check_s:
            return cur
        with self._learned_lock:
            cur = self._learned
            if cur is not None and cur.table_version == idx.version and now - cur.checked < self.check_s:
                return cur
            if self.lake is None:
                new = _Learned(idx.version, model_job.empty_rows(), None, now)
            else:
                index = model_job.read_index(self.lake)
                if cur is not None and cur.table_version == idx.version:
                    rows = cur.rows
                    kept = cur.models if index == cur.index else {}
                else:
                    rows = self._history() if index else model_job.empty_rows()
                    kept = {}
                new = _Learned(idx.version, rows, index, now, dict(kept))
            self._learned = new
            return new

    def _history(self) -> Rows:
        """The learned similarity's rows: from the snapshot in memory, else read from the table."""
        assert self.lake is not None
        held = self._snapshot().history
        return model_job.history(self.lake) if held is None else model_job.history_of(held)

    def _model_for(
        self, st: _Learned, as_of: dt.date
    ) -> tuple[SetupModel, npt.NDArray[np.float32], npt.NDArray[np.float32]] | None:
        if not st.index or self.lake is None:
            return None
        dates = sorted(st.index["models"])
        usable = [d for d in dates if dt.date.fromisoformat(d) <= as_of]
        if not usable:
            return None
        version = str(st.index["models"][usable[-1]])
        hit = st.models.get(version)
        if hit is None:
            model = model_job.load_model(self.lake, version)
            z = (
                model.embed(st.rows.raw, st.rows.kind, st.rows.direction).astype(np.float32)
                if st.rows.day.size
                else np.zeros((0, 0), np.float32)
            )
            hit = (model, z, np.einsum("ij,ij->i", z, z))
            st.models[version] = hit
            st.hashes[id(model)] = model.version
        return hit

    def learned_raw(self, episode_id: str) -> npt.NDArray[np.float64] | None:
        """A history row's raw vector by episode id (None if it is not an approach in the table)."""
        st = self._learned_state()
        ids = st.rows.episode_id
        if ids is None or ids.size == 0:
            return None
        pos = np.flatnonzero(ids == episode_id)
        return st.rows.raw[pos[0]] if pos.size else None

    def setup_answer(
        self, raw: Sequence[float] | npt.NDArray[Any], level_kind: str, direction: str, as_of: dt.date
    ) -> dict[str, Any] | None:
        """P(BREAK) from the learned metric's nearest earlier approaches; None before any fit."""
        st = self._learned_state()
        hit = self._model_for(st, as_of)
        if hit is None:
            return None
        model, z_all, sq_all = hit
        # rows are sorted by date: the history before as_of is a prefix (a view, no copy)
        end = int(np.searchsorted(st.rows.day, day_number(as_of), side="left"))
        y = (st.rows.label[:end] == "BREAK").astype(np.float64)
        q = model.embed(np.asarray(raw, dtype=np.float64)[None, :], [level_kind], [direction]).astype(
            np.float32
        )
        ans = model.search(z_all[:end], y, q, train_sq=sq_all[:end])
        keep = np.arange(end)
        p = float(model.platt(ans.p_raw)[0])
        lo, hi = (
            logit_interval([p], LEARNED.interval_logit)
            if LEARNED.interval_logit is not None
            else beta_interval([p], [LEARNED.interval_evidence])
        )
        nb = keep[ans.neighbours[0]] if ans.neighbours.size else np.zeros(0, np.int64)
        dist = ans.distance[0] if ans.distance.size else np.zeros(0)
        wts = ans.weight[0] if ans.weight is not None and ans.weight.size else np.ones(dist.size)
        ev = model.evidence.get(level_kind)
        shown = []
        ids = st.rows.episode_id
        for i, d, w in zip(
            nb[: LEARNED.neighbours_shown].tolist(), dist.tolist(), wts.tolist(), strict=False
        ):
            shown.append(
                {
                    "episode_id": str(ids[i]) if ids is not None else "",
                    "date": from_day_number(int(st.rows.day[i])).isoformat(),
                    "time": et_time(int(st.rows.ts[i])),
                    "level_kind": str(st.rows.kind[i]),
                    "direction": str(st.rows.direction[i]),
                    "outcome": str(st.rows.label[i]),
                    "distance": round(float(d), 4),
                    "weight": round(float(w), 4),
                }
            )
        return {
            "model": {
                "version": st.hashes.get(id(model)) or model.version,
                "method": model.method,
                "kernel": model.kernel,
                "population": LEARNED.population,
                "fitted_through": model.fitted_on[-1] if model.fitted_on else None,
                "train_days": len(model.fitted_on),
            },
            "p_break": round(p, 4),
            "p_break_raw": round(float(ans.p_raw[0]), 4),
            "interval": [round(float(lo[0]), 4), round(float(hi[0]), 4)],
            "interval_level": 0.8,
            "n": int(ans.neighbours.shape[1]) if ans.neighbours.ndim == 2 else 0,
            "breaks": int(ans.n_break[0]) if ans.n_break.size else 0,
            "neighbours": shown,
            "evidence": {
                "level_kind": level_kind,
                "measured": ev or {},
                "overall": model.evidence.get("ALL", {}),
                "verdict": _verdict(ev),
            },
        }
