"""Housekeeping: remove what no commit references, once it is old enough to be nobody's work.

A run writes its data files first and its manifest last, so a run killed in between (``kill -9``
during bronze, a crashed Lambda) leaves part files no manifest lists; a local write killed mid-way
leaves a ``.<name>.<random>.tmp``. Readers never see either, but they take space until the date
is re-run. :func:`vacuum` removes both — but only once older than a grace period, because a
job still running has exactly such files — and LanceDB's old table versions.

Raw files and quarantine are never touched: they are inputs and evidence, not derived data.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

from spymaster.lake import Lake, committed_dates, paths, read_manifest
from spymaster.lake.paths import Layer
from spymaster.layers import index

DEFAULT_GRACE = index.HOUSEKEEPING_GRACE
"""Longer than any job runs: a file younger than this may belong to a run in progress."""


@dataclass
class VacuumResult:
    removed: list[str] = field(default_factory=list)
    kept_young: list[str] = field(default_factory=list)
    table_versions_removed: int = 0


def _referenced(lake: Lake, layer: Layer, table: str) -> set[str]:
    return {
        f
        for date in committed_dates(lake, layer, table)
        for f in read_manifest(lake, layer, table, date).files
    }


def vacuum(lake: Lake, *, grace: dt.timedelta = DEFAULT_GRACE, dry_run: bool = False) -> VacuumResult:
    """Delete unreferenced layer files and temp files older than ``grace``; prune old versions
    of the vector table (under the ``index`` lock, so no indexer is writing meanwhile).

    Parameters
    ----------
    grace
        Files (and table versions) younger than this are kept.
    dry_run
        Report what would be removed, remove nothing.
    """
    res = VacuumResult()
    cutoff_ns = int((time.time() - grace.total_seconds()) * 1e9)
    for layer in Layer:
        for d in lake.list_dirs(layer.value):
            table = d.rsplit("/", 1)[-1]
            keep = _referenced(lake, layer, table)
            for info in lake.list_infos(paths.table_root(layer, table)):
                rel = lake.rel(info.path)
                if rel in keep or not rel.rsplit("/", 1)[-1].startswith(("part-", ".")):
                    continue
                if (info.mtime_ns or 0) > cutoff_ns:
                    res.kept_young.append(rel)
                    continue
                res.removed.append(rel)
    for prefix in (paths.MANIFESTS_ROOT, paths.QUALITY_ROOT, paths.QUARANTINE_ROOT, paths.RAW_ROOT):
        for info in lake.list_infos(prefix):  # interrupted local atomic writes
            rel = lake.rel(info.path)
            name = rel.rsplit("/", 1)[-1]
            if name.startswith(".") and name.endswith(".tmp"):
                (res.kept_young if (info.mtime_ns or 0) > cutoff_ns else res.removed).append(rel)
    if not dry_run:
        for rel in res.removed:
            lake.delete(rel)
        res.table_versions_removed = index.prune_versions(lake, grace)
    return res
