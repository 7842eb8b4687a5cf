"""DuckDB over the lake: one view per committed layer table, local or on S3.

DuckDB's httpfs extension cannot be downloaded here, so S3 goes through an fsspec filesystem
registered with the connection. Views list committed files only (from manifests).
"""

from __future__ import annotations

from typing import Any

import duckdb

from spymaster.lake import Lake, committed_dates, paths, read_manifest
from spymaster.lake.paths import Layer


def tables(lake: Lake) -> dict[tuple[Layer, str], list[str]]:
    """Every committed table → the URIs of its committed files."""
    out: dict[tuple[Layer, str], list[str]] = {}
    for layer in Layer:
        for d in lake.list_dirs(paths.layer_manifest_root(layer)):
            table = d.rsplit("/", 1)[-1]
            files = [
                lake.full_uri(f)
                for date in committed_dates(lake, layer, table)
                for f in read_manifest(lake, layer, table, date).files
            ]
            if files:
                out[(layer, table)] = files
    return out


def connect(lake: Lake) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with schemas ``bronze``/``silver``/``gold`` and a view per table."""
    con = duckdb.connect()
    if lake.is_s3:
        con.register_filesystem(lake.fsspec())
    for layer in Layer:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {layer.value}")
    for (layer, table), files in tables(lake).items():
        listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        con.execute(
            f'CREATE VIEW {layer.value}."{table}" AS '
            f"SELECT * FROM read_parquet([{listing}], hive_partitioning = true)"
        )
    return con


def query(lake: Lake, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one statement; returns (column names, rows), fully materialised before returning."""
    con = connect(lake)
    try:
        rel = con.sql(sql)
        if rel is None:
            return [], []
        cols = list(rel.columns)
        rows = rel.fetchall()
        return cols, rows
    finally:
        con.close()
