"""Helpers shared by tests (importable, unlike conftest)."""

from __future__ import annotations

from pathlib import Path

from spymaster.settings import StorageSettings

DATA = Path(__file__).parent / "data"
S3_BUCKET = "spymaster-test"


def fixture_files() -> list[Path]:
    """Every real Databento DBN test file copied from shared/fixtures/dbn."""
    return sorted(p for p in DATA.rglob("*.dbn*") if p.is_file())


def s3_settings(endpoint: str, prefix: str) -> StorageSettings:
    return StorageSettings(
        lake_uri=f"s3://{S3_BUCKET}/{prefix}",
        endpoint_url=endpoint,
        access_key_id="testing",
        secret_access_key="testing",
        region="us-east-1",
    )


def fixture(schema: str, version: str | None = None, dataset: str = "GLBX.MDP3") -> Path:
    """A real Databento fixture: ``fixture("trades")``, ``fixture("mbp-10", "v1")``."""
    if version is None:
        return DATA / dataset / f"test_data.{schema}.dbn.zst"
    return DATA / "versions" / f"test_data.{schema}.{version}.dbn.zst"


def decode_day_files(files: dict[object, bytes], tmp: Path) -> dict[str, object]:
    """Decode generated DBN bytes the way bronze does, keyed by bronze table name."""
    import pyarrow as pa

    from spymaster.raw import dbnread

    out: dict[str, object] = {}
    for kind, data in files.items():
        path = tmp / f"{kind.bronze_table}.dbn.zst"  # type: ignore[attr-defined]
        path.write_bytes(data)
        out[kind.bronze_table] = pa.Table.from_batches(list(dbnread.decode(path)))  # type: ignore[attr-defined]
    return out


def silver_inputs(date: object, *, scale: float, seed: int) -> object:
    """A generated day decoded as bronze would be, as silver's inputs (tests cache it themselves)."""
    import tempfile

    from spymaster.layers import silver
    from spymaster.synth import generate_day

    day = generate_day(date, scale=scale, seed=seed)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        t: dict[str, object] = decode_day_files(day.files, Path(tmp))  # type: ignore[arg-type]
    t.pop("opt_trades")  # silver does not read options trades
    return silver.SilverInputs(date=date, **t)  # type: ignore[arg-type]
