"""The contract between the live engine, its record sources and its push channel.

A *source* yields Databento DBN record objects (``databento_dbn`` ``InstrumentDefMsg``,
``TradeMsg``, ``MBP10Msg``, ``MBP1Msg``, ``StatMsg`` …) in arrival order. The *engine* consumes
them and returns :class:`Update` objects; the *hub* fans updates out to subscribers (SSE).
Payloads are JSON-ready and use the same shapes as the batch API so the page renders both alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

UpdateKind = Literal["bar", "levels", "state", "answer", "streams", "status"]
"""``bar``: one 2-minute bar as a row of ``/v1/days/{date}/bars``; ``levels``: one 30-s step as
a row of ``/v1/days/{date}/levels``; ``state``: one state-table row (a level at a 30-s step);
``answer``: a ``/v1/similar`` answer (at an approach, a bar close in the zone, or on request);
``streams``: a level's ``/v1/days/{date}/streams`` answer as of a 2-minute bar close (its bars so far);
``status``: the engine's own health (lag, drops, model/table version, reconnects)."""


@dataclass(frozen=True)
class Update:
    """One thing that changed, stamped with the record time it reflects and when it was made."""

    kind: UpdateKind
    date: str
    """The trading date (ISO) the update belongs to."""
    record_ts_ns: int
    """``ts_recv`` of the last record the engine had consumed when it produced this update."""
    emitted_ns: int
    """Wall clock (``time.time_ns()``) when the update was produced: lag = emitted − arrival."""
    level: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


class RecordSink(Protocol):
    """Anything that consumes DBN records in arrival order (the engine)."""

    def feed(self, records: Sequence[Any]) -> list[Update]: ...


RecordSource = Iterable[Any]
"""DBN record objects in arrival order (replay of a lake date, or ``databento.Live``)."""
