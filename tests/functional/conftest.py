"""Fixtures of the functional tests: a small lake built through the vector table, shared."""

from __future__ import annotations

import datetime as dt

import pytest

from spymaster.lake import Lake
from spymaster.layers import index, pipeline
from spymaster.settings import StorageSettings
from spymaster.synth import generate

BUILT_DATES = (dt.date(2026, 3, 9), dt.date(2026, 3, 10), dt.date(2026, 3, 11))


@pytest.fixture(scope="session")
def built_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """Three generated days (Mon–Wed) through gold and the vector table; read-only for tests."""
    lake = Lake(StorageSettings(lake_uri=str(tmp_path_factory.mktemp("built") / "lake")))
    generate(lake, BUILT_DATES[0], len(BUILT_DATES), scale=0.01, seed=3, progress=False)
    results = pipeline.run(lake.settings, list(BUILT_DATES))
    assert all(r.ok for r in results), [r.error for r in results]
    index.index(lake)
    return lake
