"""The learned similarity end to end on a generated lake: fit job, versioned models, served answer, as-of."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from spymaster import synth
from spymaster.api.schemas import SimilarResponse
from spymaster.lake import Lake, paths
from spymaster.layers import index, models, pipeline
from spymaster.serving import Service
from spymaster.settings import LearnedSimilarity, StorageSettings

START = dt.date(2026, 3, 2)
CFG = LearnedSimilarity(min_train_days=2, k=30)


def _build(root: Path, days: int) -> Lake:
    lake = Lake(StorageSettings(lake_uri=str(root)))
    dates = synth.generate(lake, START, days, scale=0.02, seed=11, progress=False)
    assert all(r.ok for r in pipeline.run(lake.settings, dates))
    index.index(lake)
    return lake


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return _build(tmp_path_factory.mktemp("learned"), 5)


def _approach(lake: Lake, date: dt.date) -> str:
    t = index.read_all(lake, ["episode_id"], where=f"anchor_reason = 'APPROACH' AND date = date '{date}'")
    assert t.num_rows
    return str(t.column("episode_id")[0].as_py())


def test_fit_writes_one_model_per_date_and_is_idempotent(lake: Lake) -> None:
    res = models.fit(lake, CFG)
    first = lake.read_json(paths.MODELS_INDEX)
    # days 3..5 (two earlier dates each) and the trading day after the last
    assert sorted(first["models"]) == ["2026-03-04", "2026-03-05", "2026-03-06", "2026-03-09"]
    assert all(lake.exists(paths.model_file(v)) for v in first["models"].values())
    for d, v in first["models"].items():
        m = models.load_model(lake, v)
        assert m.version == v
        assert max(m.fitted_on) < d  # fitted on earlier days only
    again = models.fit(lake, CFG)
    assert lake.read_json(paths.MODELS_INDEX) == first
    assert again.models == res.models


def test_served_answer_names_its_model_and_sees_only_earlier_days(lake: Lake) -> None:
    models.fit(lake, CFG)
    svc = Service(lake, table_check_seconds=0.0)
    day = dt.date(2026, 3, 6)
    ans = svc.similar(episode_id=_approach(lake, day))
    SimilarResponse.model_validate(ans)  # the API contract holds it
    s = ans["setup"]
    assert s is not None
    assert s["model"]["version"] == lake.read_json(paths.MODELS_INDEX)["models"]["2026-03-06"]
    assert s["model"]["fitted_through"] < day.isoformat()
    assert s["neighbours"]
    assert all(nb["date"] < day.isoformat() for nb in s["neighbours"])
    assert 0 <= s["interval"][0] <= s["p_break"] <= s["interval"][1] <= 1
    assert s["evidence"]["level_kind"] == ans["query"]["level_kind"]
    assert s["evidence"]["verdict"]


def test_a_later_day_changes_nothing_as_of_an_earlier_day(tmp_path: Path) -> None:
    # Given a lake of 5 days, fitted, and the answer for an approach on day 5 as of day 5
    lake = _build(tmp_path, 5)
    models.fit(lake, CFG)
    eid = _approach(lake, dt.date(2026, 3, 6))
    before = Service(lake).similar(episode_id=eid)["setup"]
    # When a sixth day lands, is indexed and the models are refitted
    dates = synth.generate(lake, dt.date(2026, 3, 9), 1, scale=0.02, seed=11, progress=False)
    assert all(r.ok for r in pipeline.run(lake.settings, dates))
    index.index(lake)
    models.fit(lake, CFG)
    after = Service(lake).similar(episode_id=eid)["setup"]
    # Then the earlier answer is identical, model version included; the new day got its own model
    assert after == before
    assert "2026-03-10" in lake.read_json(paths.MODELS_INDEX)["models"]


def test_no_models_means_no_setup_answer(tmp_path: Path) -> None:
    lake = _build(tmp_path, 2)
    ans = Service(lake).similar(episode_id=_approach(lake, dt.date(2026, 3, 3)))
    assert ans["setup"] is None
