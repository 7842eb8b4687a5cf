"""A lake holding only ES futures files (no options subscription) runs through every layer with
dealer features null; options landing later re-run exactly their date. Local and on S3."""

from __future__ import annotations

import datetime as dt

import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner, Result

from spymaster.cli import app
from spymaster.lake import Lake, paths, read_committed, status
from spymaster.lake.paths import Layer
from spymaster.layers import index, pipeline
from spymaster.serving import Service
from spymaster.settings import storage_settings
from spymaster.synth import generate, generate_day

D1, D2 = dt.date(2026, 3, 10), dt.date(2026, 3, 11)
SCALE, SEED = 0.01, 23


def _dealer(lake: Lake, date: dt.date) -> tuple[set[float], int]:
    state = read_committed(lake, Layer.SILVER, "state", date)
    gex = state.column("dealer_gex_total")
    return set(state.column("dealer_missing").to_pylist()), gex.null_count + int(
        pc.sum(pc.is_nan(gex.fill_null(0.0))).as_py() or 0
    )


def _cli_status(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> Result:
    """``spymaster status`` in-process, its settings read from the environment as a user's are."""
    st = lake.settings
    if st.endpoint_url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", st.endpoint_url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", st.access_key_id or "")
        monkeypatch.setenv(
            "AWS_SECRET_ACCESS_KEY", st.secret_access_key.get_secret_value() if st.secret_access_key else ""
        )
    storage_settings.cache_clear()
    try:
        return CliRunner().invoke(app, ["status", "--lake", lake.uri])
    finally:
        storage_settings.cache_clear()


def test_futures_only_lake_runs_every_layer_and_options_landing_later_rerun_their_date(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a lake with only the three ES futures files per date
    generate(lake, D1, 2, scale=SCALE, seed=SEED, progress=False, options=False)
    assert all(not lake.exists(paths.raw_file(k, d)) for k in paths.OPTIONS_RAW for d in (D1, D2))
    st = {s.date: s for s in status.collect(lake)}
    assert st[D1].raw_ready
    assert st[D1].options == 0
    assert st[D1].options_note == "no options (dealer features null)"

    # When the pipeline runs
    first = pipeline.run(lake.settings, [D1, D2])

    # Then every date reaches gold, with dealer features null and dealer_missing = 1
    assert [r.error for r in first] == [None, None]
    assert [r.done for r in first] == [["bronze", "silver", "gold", "streams"]] * 2
    assert [r.options for r in first] == [0, 0]
    for d in (D1, D2):
        missing, null_gex = _dealer(lake, d)
        assert missing == {1.0}
        assert null_gex == read_committed(lake, Layer.SILVER, "state", d).num_rows
        assert not any(
            lake.exists(paths.manifest(Layer.BRONZE, k.bronze_table, d)) for k in paths.OPTIONS_RAW
        )
        assert pipeline.is_built(lake, d)
    indexed = index.index(lake, [D1, D2])
    assert (
        sum(r.rows for r in indexed)
        == sum(read_committed(lake, Layer.GOLD, paths.EPISODES_TABLE, d).num_rows for d in (D1, D2))
        > 0
    )

    # And the API's day list says so (the page shows it)
    days = {d["date"]: d for d in Service(lake).days()["days"]}
    assert [days[d.isoformat()]["options"] for d in (D1, D2)] == [False, False]

    # And status says which dates lack options
    out = _cli_status(lake, monkeypatch)
    assert out.exit_code == 0, out.output
    assert "2 date(s) lack options" in out.output
    assert out.output.count("no options (dealer features null)") == 2  # one per date row
    assert f"lack options (dealer features null or partial): {D1.isoformat()}, {D2.isoformat()}" in out.output

    # When D1's options land later
    day = generate_day(D1, scale=SCALE, seed=SEED)
    for kind in paths.OPTIONS_RAW:
        lake.write_bytes(paths.raw_file(kind, D1), day.files[kind])
    assert not pipeline.is_built(lake, D1)
    again = pipeline.run(lake.settings, [D1, D2])

    # Then exactly D1 is re-run, now with its dealer features
    assert again[0].done == ["bronze", "silver", "gold", "streams"]
    assert again[0].options == 4
    assert again[1].done == ["streams"]  # D2's streams are scaled on D1's silver
    missing, null_gex = _dealer(lake, D1)
    assert missing == {0.0}
    assert null_gex < read_committed(lake, Layer.SILVER, "state", D1).num_rows
    assert {s.date: s for s in status.collect(lake)}[D1].options_note == ""
    days = {d["date"]: d for d in Service(lake).days()["days"]}
    assert [days[d.isoformat()]["options"] for d in (D1, D2)] == [True, False]
