"""Fixtures of the live tests: one generated day's raw files in a local lake."""

from __future__ import annotations

from typing import Any

import pytest

from spymaster import synth
from spymaster.lake import Lake
from spymaster.settings import StorageSettings
from tests.live_support import LIVE_DATE, lake_records


@pytest.fixture(scope="session")
def day_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """A generated day (raw files only: what a gateway serves)."""
    lake = Lake(StorageSettings(lake_uri=str(tmp_path_factory.mktemp("live") / "lake")))
    synth.generate(lake, LIVE_DATE, 1, scale=0.01, seed=3, progress=False)
    return lake


@pytest.fixture(scope="session")
def expected(day_lake: Lake) -> list[Any]:
    """What a gateway serving the day from the open must deliver, in arrival order."""
    return lake_records(day_lake, LIVE_DATE)
