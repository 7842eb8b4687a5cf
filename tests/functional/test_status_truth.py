"""``status`` tells the truth (issue 12 #10), on a local lake and on S3: "indexed" means the
vector table holds the committed gold run, and a quarantine entry stops being listed as a
problem once its date is rebuilt from a good file (the quarantined file itself is kept)."""

from __future__ import annotations

import datetime as dt

import pytest

from spymaster.errors import BadInputError
from spymaster.lake import Lake, paths, quarantine
from spymaster.lake.paths import Product, RawKind
from spymaster.lake.status import collect
from spymaster.layers import bronze, gold, index, pipeline
from spymaster.synth import generate

START = dt.date(2026, 3, 10)
TRADES = RawKind(Product.FUT, "trades")


def _status(lake: Lake, d: dt.date) -> tuple[bool, bool, str]:
    s = next(s for s in collect(lake) if s.date == d)
    return s.indexed, s.index_stale, s.layer


def test_indexed_means_the_current_gold_run(lake: Lake) -> None:
    (d,) = generate(lake, START, 1, scale=0.01, seed=71, progress=False)
    assert all(r.ok for r in pipeline.run(lake.settings, [d]))
    index.index(lake)
    assert _status(lake, d) == (True, False, "indexed")
    # When gold is recomputed (a new run) but not yet indexed
    gold.build(lake, d)
    # Then status says the index is stale, not "indexed"
    assert _status(lake, d) == (False, True, "gold (index stale)")
    index.index(lake)
    assert _status(lake, d) == (True, False, "indexed")


def test_a_repaired_date_is_no_longer_listed_as_quarantined(lake: Lake) -> None:
    (d,) = generate(lake, START, 1, scale=0.01, seed=72, progress=False)
    key = paths.raw_file(TRADES, d)
    good = lake.read_bytes(key)
    # Given a corrupt trades file, quarantined by bronze
    lake.write_bytes(key, good[: len(good) // 2])
    with pytest.raises(BadInputError):
        bronze.build(lake, TRADES, d)
    s = next(s for s in collect(lake) if s.date == d)
    assert s.quarantined == {TRADES}
    assert len(quarantine.list_all(lake, current=True)) == 1
    # When the good file lands again and bronze is rebuilt
    lake.write_bytes(key, good)
    bronze.build(lake, TRADES, d)
    # Then status no longer lists the date as quarantined, and the bad file is still kept
    s = next(s for s in collect(lake) if s.date == d)
    assert s.quarantined == set()
    assert quarantine.list_all(lake, current=True) == []
    (kept,) = quarantine.list_all(lake)
    assert kept.resolved.startswith("bronze run ")
    assert lake.exists(kept.file)
