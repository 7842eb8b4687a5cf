"""DuckDB over the lake: one view per committed layer table, local or on S3.

DuckDB's httpfs extension cannot be downloaded here, so S3 goes through an fsspec filesystem
registered with the connection. Views list committed files only (from manifests).
"""

from __future__ import annotations

import re

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from spymaster.errors import LakeError, ReadOnlyQueryError
from spymaster.lake import Lake, committed_dates, paths, read_manifest
from spymaster.lake.paths import Layer

_REF = re.compile(r'\b(bronze|silver|gold)\s*\.\s*"?([A-Za-z0-9_]+)"?', re.IGNORECASE)


def table_names(lake: Lake) -> list[tuple[Layer, str]]:
    """Every (layer, table) with a manifest folder: one listing per layer, no manifest read."""
    return [
        (layer, d.rsplit("/", 1)[-1])
        for layer in Layer
        for d in lake.list_dirs(paths.layer_manifest_root(layer))
    ]


def files_of(lake: Lake, layer: Layer, table: str) -> list[str]:
    """The URIs of a table's committed files (from its manifests)."""
    return [
        lake.full_uri(f)
        for date in committed_dates(lake, layer, table)
        for f in read_manifest(lake, layer, table, date).files
    ]


def tables(lake: Lake) -> dict[tuple[Layer, str], list[str]]:
    """Every committed table → the URIs of its committed files."""
    out = {}
    for layer, table in table_names(lake):
        if files := files_of(lake, layer, table):
            out[(layer, table)] = files
    return out


def referenced(sql: str, known: list[tuple[Layer, str]]) -> list[tuple[Layer, str]]:
    """The lake tables a statement names (``bronze.fut_trades``…); all of them if it names none."""
    names = {(m[1].lower(), m[2]) for m in _REF.finditer(sql)}
    hit = [(layer, t) for layer, t in known if (layer.value, t) in names]
    return hit if hit else known


def connect(lake: Lake, sql: str | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with schemas ``bronze``/``silver``/``gold`` and a view per table.

    Views are made per table, and only for the tables ``sql`` names (all if it names none), so
    a broken table — a committed file gone missing — breaks only the queries that read it.

    Raises
    ------
    LakeError
        A table the statement reads lists a committed file that is missing.
    """
    con = duckdb.connect()
    if lake.is_s3:
        con.register_filesystem(lake.fsspec())
    for layer in Layer:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {layer.value}")
    known = table_names(lake)
    wanted = referenced(sql, known) if sql is not None else known
    for layer, table in wanted:
        files = files_of(lake, layer, table)
        if not files:
            continue
        listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        try:
            con.execute(
                f'CREATE VIEW {layer.value}."{table}" AS '
                f"SELECT * FROM read_parquet([{listing}], hive_partitioning = true)"
            )
        except duckdb.Error:
            missing = [lake.rel(f.removeprefix("s3://")) for f in files]
            missing = [f for f in missing if not lake.exists(f)]
            if not missing:
                raise
            if sql is not None and wanted != known:  # the statement reads this very table
                con.close()
                raise LakeError(
                    f"{layer.value}.{table} lists {len(missing)} committed file(s) that are "
                    f"missing (first: {missing[0]}); run `spymaster validate`",
                    file=missing[0],
                ) from None
    return con


_READ_ONLY = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})
"""SELECT (with WITH, FROM-first, VALUES, DESCRIBE, SUMMARIZE, SHOW) and EXPLAIN: nothing that
writes a file, changes the catalogue or the connection's settings."""


def check_read_only(sql: str) -> None:
    """Refuse anything but one read-only statement.

    Raises
    ------
    ReadOnlyQueryError
        More than one statement, or one that is not a SELECT / EXPLAIN (``DROP VIEW``,
        ``COPY … TO``, ``ATTACH``, ``SET``, ``INSTALL``, …).
    duckdb.ParserException
        The statement does not parse.
    """
    statements = duckdb.extract_statements(sql)
    if len(statements) != 1:
        raise ReadOnlyQueryError(f"one statement at a time, got {len(statements)}")
    kind = statements[0].type
    if kind not in _READ_ONLY:
        raise ReadOnlyQueryError(
            f"the lake is read-only here: SELECT or EXPLAIN only, not {kind.name.replace('_', ' ')}"
        )


def query(lake: Lake, sql: str) -> pa.Table:
    """Run one read-only statement; the answer fully materialised as an Arrow table.

    Arrow, not DuckDB's Python rows: those need ``pytz`` for every timestamp with a time zone.

    Raises
    ------
    ReadOnlyQueryError
        See :func:`check_read_only` (checked before the lake is opened).
    """
    check_read_only(sql)
    con = connect(lake, sql)
    try:
        rel = con.sql(sql)
        if rel is None:
            return pa.table({})
        return rel.to_arrow_table()
    finally:
        con.close()


def display(table: pa.Table) -> list[list[str]]:
    """The cells of an answer as text: timestamps in ISO 8601 (UTC, to the nanosecond), nulls empty."""
    cols: list[list[str]] = []
    for col in table.columns:
        t = col.type
        if pa.types.is_timestamp(t) and t.tz is not None:
            utc = col.cast(pa.timestamp(t.unit, tz="UTC"))
            cells = pc.strftime(utc, format="%Y-%m-%dT%H:%M:%SZ").to_pylist()
        elif pa.types.is_timestamp(t):
            cells = pc.strftime(col, format="%Y-%m-%dT%H:%M:%S").to_pylist()
        elif pa.types.is_date(t) or pa.types.is_time(t):
            cells = pc.cast(col, pa.string()).to_pylist()
        else:
            cells = [None if v is None else str(v) for v in col.to_pylist()]
        cols.append(["" if v is None else v for v in cells])
    return [list(r) for r in zip(*cols, strict=True)] if cols else []
