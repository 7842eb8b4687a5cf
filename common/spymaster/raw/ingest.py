"""Landing user-supplied Databento files: place each by its own metadata, refuse what cannot be placed."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from spymaster.errors import BadInputError, MislabelledInputError, UnknownDatasetError
from spymaster.lake import Lake, paths
from spymaster.lake.paths import raw_file
from spymaster.raw import dbnread, quality


class UnusedSchemaError(UnknownDatasetError):
    """A good ES file of a schema Spymaster does not use (ES futures mbp-1, tbbo, statistics, …)."""


@dataclass(frozen=True)
class Placed:
    source: str
    key: str
    date: dt.date
    kind: paths.RawKind


def place(path: str | Path) -> tuple[paths.RawKind, dt.date]:
    """Where a DBN file belongs in ``raw/``, from its metadata alone.

    The date is the trading session the file's window overlaps most (a per-UTC-day request
    covers one ET session and the first hours of the next).

    Raises
    ------
    BadInputError
        Empty, corrupt, an unknown dataset or schema, symbols of no ES product, or records that
        lie (outside the file's window, unknown instruments, implausible values).
    """
    info = dbnread.inspect(path)
    if info.dataset != paths.DATASET:
        raise UnknownDatasetError(f"dataset {info.dataset} is not {paths.DATASET}", file=str(path))
    product = dbnread.product_of(info)
    if product is None:
        raise MislabelledInputError(
            f"cannot tell the ES product from symbols {list(info.symbols)[:5]}", file=str(path)
        )
    if info.schema is None:
        raise UnknownDatasetError("mixed-schema files cannot be placed", file=str(path))
    try:
        kind = paths.raw_kind(product.value, info.schema)
    except ValueError:
        used = ", ".join(k.schema for k in paths.RAW_KINDS if k.product is product)
        raise UnusedSchemaError(
            f"{product.value} {info.schema} is not used (Spymaster reads {product.value} {used})",
            file=str(path),
            schema=info.schema,
        ) from None
    date = dbnread.trading_date_of(info)
    dbnread.check_placement(info, kind, date)
    quality.check_file(path, info, kind)  # the records must be what the metadata says
    return kind, date


def ingest(
    lake: Lake, paths: list[Path], *, force: bool = False
) -> tuple[list[Placed], list[BadInputError], list[UnusedSchemaError]]:
    """Copy each file to its raw key; returns what was placed, what was refused (and why), and
    the good files of schemas Spymaster does not use, which are left out (not an error)."""
    placed: list[Placed] = []
    refused: list[BadInputError] = []
    unused: list[UnusedSchemaError] = []
    for p in paths:
        try:
            kind, date = place(p)
        except UnusedSchemaError as exc:
            unused.append(exc)
            continue
        except BadInputError as exc:
            refused.append(exc)
            continue
        key = raw_file(kind, date)
        if force or not lake.exists(key):
            lake.put_file(p, key)
        placed.append(Placed(source=str(p), key=key, date=date, kind=kind))
    return placed, refused, unused
