"""Which dates are at which layer, and what is quarantined."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from spymaster.lake import Lake, committed_dates, paths, quarantine, read_manifest
from spymaster.lake.paths import Layer


@dataclass
class DateStatus:
    date: dt.date
    raw: set[paths.RawKind] = field(default_factory=set)
    bronze: set[str] = field(default_factory=set)
    quarantined: set[paths.RawKind] = field(default_factory=set)
    silver: bool = False
    gold: bool = False
    episodes: int = 0
    indexed: bool = False
    index_stale: bool = False
    """An index marker exists but records another gold run than the committed one."""
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per bronze table, implausible records dropped by reason (from the data-quality records)."""

    @property
    def n_dropped(self) -> int:
        return sum(sum(d.values()) for d in self.dropped.values())

    @property
    def raw_ready(self) -> bool:
        """Every futures file has landed: the date can run (options are optional)."""
        return self.raw >= set(paths.REQUIRED_RAW)

    @property
    def options(self) -> int:
        """How many of the date's options raw files have landed."""
        return len(self.raw & set(paths.OPTIONS_RAW))

    @property
    def options_note(self) -> str:
        """``""`` with every options file, else what the date lacks (its dealer features are null)."""
        n, total = self.options, len(paths.OPTIONS_RAW)
        if n == total:
            return ""
        return "no options (dealer features null)" if n == 0 else f"options {n}/{total} (dealer partial)"

    @property
    def bronze_done(self) -> bool:
        return self.bronze >= set(paths.REQUIRED_BRONZE)

    @property
    def layer(self) -> str:
        """The furthest layer complete for this date."""
        if self.indexed:
            return "indexed"
        if self.gold:
            return "gold (index stale)" if self.index_stale else "gold"
        if self.silver:
            return "silver"
        if self.bronze_done:
            return "bronze"
        if self.raw_ready:
            return "raw"
        return "partial-raw" if self.raw else "none"


def landed_raw(lake: Lake) -> dict[dt.date, set[paths.RawKind]]:
    out: dict[dt.date, set[paths.RawKind]] = {}
    for f in lake.list_files(paths.RAW_ROOT):
        try:
            k = paths.parse_raw_key(f)
        except ValueError:
            continue
        if f == paths.raw_file(k.kind, k.date):
            out.setdefault(k.date, set()).add(k.kind)
    return out


def collect(lake: Lake) -> list[DateStatus]:
    by_date: dict[dt.date, DateStatus] = {}

    def get(d: dt.date) -> DateStatus:
        return by_date.setdefault(d, DateStatus(d))

    for d, kinds in landed_raw(lake).items():
        get(d).raw |= kinds
    for table in paths.BRONZE_TABLES:
        for d in committed_dates(lake, Layer.BRONZE, table):
            get(d).bronze.add(table)
    for d in committed_dates(lake, Layer.SILVER, paths.STATE_TABLE):
        get(d).silver = True
    gold_runs: dict[dt.date, str] = {}
    for d in committed_dates(lake, Layer.GOLD, paths.EPISODES_TABLE):
        m = read_manifest(lake, Layer.GOLD, paths.EPISODES_TABLE, d)
        get(d).gold, get(d).episodes, gold_runs[d] = True, m.rows, m.run_id
    for f in lake.list_files(paths.INDEX_MARKERS):
        s = get(paths.date_from_partition(f))
        # "indexed" means the table holds the gold run that is committed now, not just a marker
        if gold_runs.get(s.date) is not None and lake.read_json(f).get("gold_run") == gold_runs[s.date]:
            s.indexed = True
        else:
            s.index_stale = True
    for f in lake.list_files(paths.QUALITY_ROOT):
        rec = lake.read_json(f)
        if rec.get("dropped") and not rec.get("refused"):
            get(paths.date_from_partition(f)).dropped[str(rec["table"])] = dict(rec["dropped"])
    for q in quarantine.list_all(lake, current=True):
        get(dt.date.fromisoformat(q.date)).quarantined.add(paths.raw_kind(q.product, q.schema))
    return [by_date[d] for d in sorted(by_date)]


@dataclass(frozen=True)
class Missing:
    """A file a committed manifest lists that is not in the lake."""

    manifest: str
    file: str


def missing_files(lake: Lake) -> list[Missing]:
    """Every committed file that is missing: one listing per table, one read per manifest."""
    out: list[Missing] = []
    for layer in Layer:
        for d in lake.list_dirs(paths.layer_manifest_root(layer)):
            table = d.rsplit("/", 1)[-1]
            present = set(lake.list_files(paths.table_root(layer, table)))
            for date in committed_dates(lake, layer, table):
                m = read_manifest(lake, layer, table, date)
                out += [Missing(paths.manifest(layer, table, date), f) for f in m.files if f not in present]
    return out
