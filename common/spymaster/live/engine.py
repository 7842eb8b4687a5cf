"""The live engine: DBN records in arrival order in, bars, levels, state rows and answers out.

It adds no maths of its own. The state rows come from :class:`spymaster.layers.silver.SilverEngine`
(batch silver is that same engine fed a whole day), the anchors from :func:`spymaster.layers.gold.
anchors`, the vectors from :func:`spymaster.vectors.build_vectors` and the answers from
:class:`spymaster.serving.Service` (the ``/v1/similar`` path, whose snapshot reloads when the
indexer commits a new table version). Records become bronze's Arrow columns through
:func:`spymaster.raw.dbnread.record_batch`, the conversion bronze applies to files.

A 30-s step is computed when the first record stamped after it arrives: every record at or before
it is then in (arrival order), and none after it is used.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import databento_dbn as dbn
import numpy as np
import pyarrow as pa

from spymaster import sessions, vectors
from spymaster.features import FEATURE_NAMES, STATE_SCHEMA
from spymaster.indicators import bars
from spymaster.layers import gold
from spymaster.layers.silver import SilverEngine, StepOutput
from spymaster.levels import LEVEL_KINDS
from spymaster.live.streams import LiveStreams, bar_close
from spymaster.live.types import Update
from spymaster.raw import dbnread
from spymaster.serving import Service
from spymaster.serving.days import BARS_FROM, et_time, iso_z
from spymaster.settings import PipelineSettings

log = logging.getLogger(__name__)

_SCHEMA_OF: dict[type, str] = {
    dbn.TradeMsg: "trades",
    dbn.MBP10Msg: "mbp-10",
    dbn.MBP1Msg: "mbp-1",
    dbn.StatMsg: "statistics",
    dbn.InstrumentDefMsg: "definition",
}
BAR_S = 120
FLUSH_RECORDS = 512
"""Pending records are converted and handed to silver in batches of this many as they arrive, so
the step that completes a 30-s step converts only the last few (its latency), not the whole step's."""


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, dt.datetime):
            out[k] = iso_z(int(v.timestamp() * 1e9)) if v.tzinfo else v.isoformat()
        elif isinstance(v, dt.date):
            out[k] = v.isoformat()
        else:
            out[k] = _finite(v)
    return out


class Engine:
    """A :class:`~spymaster.live.types.RecordSink` for one trading date."""

    def __init__(
        self,
        date: dt.date,
        *,
        service: Service | None = None,
        settings: PipelineSettings | None = None,
        clock: Callable[[], int] = time.time_ns,
        answers: bool = True,
        streams: LiveStreams | None = None,
    ) -> None:
        self.date = date
        self.s = settings or PipelineSettings()
        self.service = service
        self.answers = answers and service is not None
        self.streams = streams
        self.clock = clock
        self.silver: SilverEngine | None = None
        self._pending: dict[str, list[Any]] = {k: [] for k in _SCHEMA_OF.values()}
        self._n_pending = 0
        bars.ema(np.zeros(3), 2)  # import the EMA's filter (0.6 s) now, not at the first step
        pa.array([date], pa.date32())  # pyarrow loads its pandas shim (0.13 s) at a first date column
        self._defs: list[Any] = []
        self._steps = sessions.step_times(date)
        lo, _ = sessions.globex_session(date)
        first = sessions.et_ns(date, BARS_FROM)
        self._bar_closes = np.arange(first, int(self._steps[-1]) + 1, BAR_S * sessions.NS, dtype=np.int64)
        self._bar_closes = self._bar_closes[(self._bar_closes - lo) % (BAR_S * sessions.NS) == 0]
        self._bars_done = 0
        self._next = int(min(self._steps[0], self._bar_closes[0]))
        self.last_ts = 0
        self._state_tbl: pa.Table = STATE_SCHEMA.empty_table()
        self._state_new: list[pa.Table] = []
        # Per level kind, the rows so far as the anchoring rules and the vector builder read them,
        # grown a row a step: an anchor then costs the same at 12:00 as at 09:31.
        self._hist = {k: vectors.StepHistory(date, self._steps.size) for k in LEVEL_KINDS}
        if self.answers:
            self.warm()
        self.episodes: list[dict[str, Any]] = []
        """Every anchor the engine answered: its gold anchor row and raw vector (for parity)."""

    # -- the sink ---------------------------------------------------------------------------------
    def feed(self, records: Sequence[Any]) -> list[Update]:
        out: list[Update] = []
        for rec in records:
            ts = int(rec.ts_recv)
            if ts > self._next:
                out.extend(self._tick(ts))
            schema = _SCHEMA_OF.get(type(rec))
            if schema is None:
                continue  # system / error / symbol-mapping messages carry no market data
            if schema == "definition":
                self._defs.append(rec)
            else:
                self._pending[schema].append(rec)
                self._n_pending += 1
                if self._n_pending >= FLUSH_RECORDS:
                    self._flush()
            self.last_ts = max(self.last_ts, ts)
        return out

    @property
    def state(self) -> pa.Table:
        """Every state row emitted so far (the batch state table's rows, in its order)."""
        if self._state_new:  # one chunk, combined when read: gold's filters and takes cost per chunk
            self._state_tbl = pa.concat_tables([self._state_tbl, *self._state_new]).combine_chunks()
            self._state_new = []
        return self._state_tbl

    def finish(self) -> list[Update]:
        """The stream ended (replay reached its end): complete every remaining step."""
        out = self._tick(np.iinfo(np.int64).max, final=True)
        return out

    # -- steps ------------------------------------------------------------------------------------
    def _start(self) -> bool:
        if self.silver is not None:
            return True
        if not self._defs:
            return False
        d = pa.Table.from_batches([dbnread.record_batch(self._defs, "definition")])
        cls = d.column("instrument_class").to_pylist()
        is_opt = np.isin(np.asarray(cls, dtype=object), ["C", "P"])
        fut = d.filter(pa.array(~is_opt))
        opt = d.filter(pa.array(is_opt)) if is_opt.any() else None
        self.silver = SilverEngine(self.date, fut, self.s, opt_definition=opt)
        self.silver.keep_outputs = False
        return True

    def _flush(self) -> None:
        if not self._start():
            return
        eng = self.silver
        assert eng is not None
        p = self._pending
        if p["trades"]:
            eng.add_trades(pa.Table.from_batches([dbnread.record_batch(p["trades"], "trades")]))
        if p["statistics"]:
            eng.add_option_statistics(
                pa.Table.from_batches([dbnread.record_batch(p["statistics"], "statistics")])
            )
        if p["mbp-1"]:
            eng.add_option_quotes(pa.Table.from_batches([dbnread.record_batch(p["mbp-1"], "mbp-1")]))
        if p["mbp-10"]:
            eng.add_book(pa.Table.from_batches([dbnread.record_batch(p["mbp-10"], "mbp-10")]))
        self._pending = {k: [] for k in _SCHEMA_OF.values()}
        self._n_pending = 0

    def _tick(self, ts: int, *, final: bool = False) -> list[Update]:
        self._flush()
        eng = self.silver
        if eng is None:
            return []
        out: list[Update] = []
        # Steps first: an anchor's answer is what the trader waits for; a bar closing at the same
        # time then reads the bars the step already built (:meth:`SilverEngine.closed_bar`).
        steps = eng.finish() if final else eng.advance(ts)
        for st in steps:
            out.extend(self._step(st))
        while self._bars_done < self._bar_closes.size and self._bar_closes[self._bars_done] < ts:
            close = int(self._bar_closes[self._bars_done])
            if eng.done == 0:
                eng.prepare(close)  # the warm-up builds the night's bars, not the first step
                if close + BAR_S * sessions.NS >= int(self._steps[0]):
                    eng.rehearse(close)  # and runs a step once, so the first one runs warm
            out.append(self._bar(eng, close))
            self._bars_done += 1
        nxt = [int(self._steps[eng.done])] if eng.done < self._steps.size else []
        if self._bars_done < self._bar_closes.size:
            nxt.append(int(self._bar_closes[self._bars_done]))
        self._next = min(nxt) if nxt else np.iinfo(np.int64).max
        return out

    def _update(self, kind: Any, level: str | None, payload: dict[str, Any]) -> Update:
        return Update(kind, self.date.isoformat(), self.last_ts, self.clock(), level, payload)

    def _bar(self, eng: SilverEngine, close: int) -> Update:
        """The 2-minute bar closing at ``close``, as a row of ``/v1/days/{date}/bars``."""
        b2 = eng.closed_bar(close, BAR_S)
        row = {c: float(bars.as_float(b2.column(c))[-1]) for c in ("open", "high", "low", "close")}
        vol = int(b2.column("volume")[-1].as_py()) if b2.num_rows else 0
        payload = {"t": iso_z(close), "time": et_time(close), **{k: _finite(v) for k, v in row.items()}}
        payload["volume"] = vol
        return self._update("bar", None, payload)

    def _step(self, st: StepOutput) -> list[Update]:
        """The step's levels row, its answers (first: what the trader waits for), then its state rows."""
        out = [
            self._update(
                "levels",
                None,
                {
                    "t": iso_z(st.ts),
                    "time": et_time(st.ts),
                    **{k: _finite(v) for k, v in st.levels.items() if k not in LEVEL_KINDS},
                    "levels": {k: _finite(v) for k, v in st.levels.items() if k in LEVEL_KINDS},
                },
            )
        ]
        self._state_new.append(st.state)
        anchored = self._add_rows(st)
        if anchored:
            out.extend(self._anchors(st, anchored))
        for row in st.state.to_pylist():
            out.append(self._update("state", str(row["level_kind"]), _json_row(row)))
        if self.streams is not None and st.state.num_rows and bar_close(st.ts, self.date):
            for level, payload in self.streams.at_bar(self.state, st.ts):
                out.append(self._update("streams", level, payload))
        return out

    def _add_rows(self, st: StepOutput) -> dict[int, gold.AnchorMarks]:
        """Grow each level's history by its row at this step; return the rows gold anchors here."""
        tbl = st.state
        if tbl.num_rows == 0:
            return {}
        feats = np.stack(
            [
                np.asarray(tbl.column(c).to_numpy(zero_copy_only=False), dtype=np.float64)
                for c in FEATURE_NAMES
            ],
            axis=1,
        )
        kinds = tbl.column("level_kind").to_pylist()
        dirs = tbl.column("direction").to_pylist()
        ts = bars.as_ns(tbl.column("ts")).tolist()
        inz = (np.nan_to_num(bars.as_float(tbl.column("in_zone"))) >= 0.5).tolist()
        anchored: dict[int, gold.AnchorMarks] = {}
        for i, kind in enumerate(kinds):
            hist = self._hist[kind]
            hist.add(ts[i], feats[i], dirs[i])
            if not inz[i]:  # every anchor is in its level's zone at its own step
                continue
            m_ts, m_inz, m_dist = hist.rows()
            m = gold.anchor_marks(self.date, kind, m_ts, m_inz, m_dist)
            last = m_ts.size - 1
            if m.at.size and m.at[-1] == last:
                anchored[i] = gold.AnchorMarks(
                    np.array([last]), m.reason[-1:], m.visit[-1:], m.minutes_in_zone[-1:]
                )
        return anchored

    def _anchors(self, st: StepOutput, anchored: dict[int, gold.AnchorMarks]) -> list[Update]:
        """This step's anchors: gold's rows and vectors from the levels' histories, and the answers."""
        ts = st.ts
        rows = sorted(anchored)
        levels = pa.table(
            {
                "ts": pa.array([ts], pa.timestamp("ns", tz="UTC")),
                "price": pa.array([st.levels["price"]], pa.float64()),
                "atr": pa.array([st.levels["atr"]], pa.float64()),
            }
        )
        a = gold.anchor_table(
            st.state.take(pa.array(rows, pa.int64())),
            gold.AnchorMarks.concat([anchored[i] for i in rows]),
            levels,
        )
        out = []
        for row in a.to_pylist():
            raw = self._hist[row["level_kind"]].vector(ts)
            self.episodes.append({**row, "vector": raw})
            payload: dict[str, Any] = {
                "episode_id": row["episode_id"],
                "anchor_reason": row["anchor_reason"],
                "t": iso_z(ts),
                "time": et_time(ts),
                "level_kind": row["level_kind"],
                "direction": row["direction"],
                "time_bucket": row["time_bucket"],
                "distance": _finite(row["distance"]),
            }
            if self.answers:
                payload["answer"] = self.answer(raw, row["level_kind"], row["direction"], row["time_bucket"])
            out.append(self._update("answer", str(row["level_kind"]), payload))
        return out

    def warm(self) -> None:
        """Load what the first answer would otherwise load on the stream's path (the date's
        scaling statistics, the learned model): before the stream, and after each reload."""
        svc = self.service
        if svc is None:
            return
        try:
            svc.stats(self.date)
            svc.setup_answer(np.zeros(vectors.VECTOR_DIM), LEVEL_KINDS[0], "UP", self.date)
        except Exception:  # nothing to warm yet (no history): the answers will say so
            log.info("nothing to warm for %s", self.date, exc_info=True)

    def answer(self, raw: Any, level_kind: str, direction: str, time_bucket: int) -> dict[str, Any] | None:
        """The ``/v1/similar`` answer for a raw vector: served neighbours and distribution, and the
        learned ``setup``; from the service's current table version (reloaded when it changes)."""
        svc = self.service
        if svc is None:
            return None
        try:
            unit = vectors.apply(svc.stats(self.date), raw)
            ans = svc.similar(
                vector=np.asarray(unit, dtype=np.float64).reshape(-1).tolist(),
                partition={"level_kind": level_kind, "direction": direction, "time_bucket": int(time_bucket)},
                as_of=self.date,
            )
            ans["setup"] = svc.setup_answer(raw, level_kind, direction, self.date)
            return ans
        except Exception:  # an answer that cannot be made must not stop the stream
            log.warning("no answer for %s %s", level_kind, direction, exc_info=True)
            return None
