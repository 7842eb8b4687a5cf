"""The commit protocol: a run's data files become a partition's content through one manifest.

A job writes its data files under names unique to its run, then writes one small manifest (a
single atomic PUT / rename) listing them. Readers list manifests, never data folders, so a
half-written run is invisible; a re-run commits a new manifest and then removes the previous
run's files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from spymaster.errors import LakeError, NotCommittedError, ShrinkError
from spymaster.lake import paths
from spymaster.lake.paths import Layer
from spymaster.lake.store import Lake

SHRINK_FRACTION = 0.5
"""A re-run may not drop more than this share of a partition's rows unless told to."""


def new_run_id() -> str:
    """Unique per run so a re-run never overwrites files a committed manifest still lists."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


@dataclass
class Manifest:
    """What a committed (layer, table, date) partition consists of."""

    layer: str
    table: str
    date: str
    run_id: str
    files: list[str]
    rows: int
    inputs: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    committed_at: str = ""


def commit(
    lake: Lake,
    layer: Layer,
    table: str,
    date: dt.date,
    run_id: str,
    files: list[str],
    rows: int,
    inputs: dict[str, Any] | None = None,
    stats: dict[str, Any] | None = None,
    *,
    allow_shrink: bool = False,
) -> Manifest:
    """Make a run's files the visible content of a partition, then clean up older runs.

    Raises
    ------
    ShrinkError
        A committed partition with rows would become empty, or lose more than
        :data:`SHRINK_FRACTION` of them, and ``allow_shrink`` is not set; nothing changes.
    """
    if not allow_shrink:
        check_shrink(lake, layer, table, date, rows)
    m = Manifest(
        layer=layer.value,
        table=table,
        date=date.isoformat(),
        run_id=run_id,
        files=files,
        rows=rows,
        inputs=inputs or {},
        stats=stats or {},
        committed_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    lake.write_json(paths.manifest(layer, table, date), asdict(m))
    keep = set(files)
    for f in lake.list_files(paths.table_dir(layer, table, date)):
        if f not in keep:
            lake.delete(f)
    return m


def check_shrink(lake: Lake, layer: Layer, table: str, date: dt.date, rows: int) -> None:
    """Refuse to replace a committed partition that has rows with an empty or much smaller one.

    Raises
    ------
    ShrinkError
        The new run has fewer than ``1 - SHRINK_FRACTION`` of the committed rows.
    """
    if not is_committed(lake, layer, table, date):
        return
    before = read_manifest(lake, layer, table, date).rows
    if before > 0 and rows < before * (1 - SHRINK_FRACTION):
        raise ShrinkError(
            f"{layer.value}/{table} would shrink from {before:,} to {rows:,} rows; "
            "re-run with --allow-shrink if that is meant",
            date=date,
        )


def discard(lake: Lake, files: list[str]) -> None:
    """Remove an uncommitted run's files (after a failure), as far as storage allows.

    Best effort by design: it runs while another error is on its way out, and must not replace
    that error (a read-only lake fails the cleanup too). No manifest lists these files, so what
    cannot be removed now is invisible to readers and removed later by ``spymaster vacuum``.
    """
    for f in files:
        with contextlib.suppress(LakeError):
            lake.delete(f)


def read_manifest(lake: Lake, layer: Layer, table: str, date: dt.date) -> Manifest:
    rel = paths.manifest(layer, table, date)
    try:  # read first, ask after: a committed date (the common case) costs no HEAD of its own
        data = lake.read_json(rel)
    except LakeError:
        if not lake.exists(rel):
            raise NotCommittedError(
                f"{layer.value}/{table} is not committed for this date", date=date
            ) from None
        raise
    return Manifest(**data)


def is_committed(lake: Lake, layer: Layer, table: str, date: dt.date) -> bool:
    return lake.exists(paths.manifest(layer, table, date))


def committed_dates(lake: Lake, layer: Layer, table: str) -> list[dt.date]:
    return sorted(paths.date_from_partition(p) for p in lake.list_files(paths.manifest_root(layer, table)))


def uncommit(lake: Lake, layer: Layer, table: str, date: dt.date) -> None:
    """Withdraw a partition: manifest first (instantly invisible), then its files."""
    lake.delete(paths.manifest(layer, table, date))
    for f in lake.list_files(paths.table_dir(layer, table, date)):
        lake.delete(f)


def read_committed(
    lake: Lake, layer: Layer, table: str, date: dt.date, schema: pa.Schema | None = None
) -> pa.Table:
    m = read_manifest(lake, layer, table, date)
    return lake.read_parquet(m.files, schema=schema)
