"""DuckDB over the lake: one view per committed layer table, local or on S3.

DuckDB's httpfs extension cannot be downloaded here, so S3 goes through an fsspec filesystem
registered with the connection. Views list committed files only (from manifests).
"""

from __future__ import annotations

import re
from typing import Any

import duckdb

from spymaster.errors import LakeError
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


def query(lake: Lake, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one statement; returns (column names, rows), fully materialised before returning."""
    con = connect(lake, sql)
    try:
        rel = con.sql(sql)
        if rel is None:
            return [], []
        cols = list(rel.columns)
        rows = rel.fetchall()
        return cols, rows
    finally:
        con.close()
