"""The deferred screen (one decode) keeps and counts what the two-pass screen does, or says it cannot."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from spymaster.lake.paths import Product, RawKind
from spymaster.raw import dbnread, quality
from tests.support import fixture

KIND = RawKind(Product.FUT, "mbp-10")


def _chunks() -> tuple[dbnread.DbnInfo, np.ndarray[Any, Any]]:
    path = fixture("mbp-10")
    info = dbnread.inspect(path)
    return info, np.concatenate(list(dbnread.records(path))).copy()


def _reference(info: dbnread.DbnInfo, arr: np.ndarray[Any, Any]) -> quality.Screen:
    """The two-pass screen, its medians computed here from the records' trade prices."""
    deferred = quality.screen(None, info, KIND, deferred=True)
    px = arr["price"].astype(np.float64) / 1e9
    medians = {}
    for i in np.unique(arr["instrument_id"]):
        sel = (arr["instrument_id"] == i) & (arr["price"] != np.iinfo(np.int64).max) & (px > 0)
        medians[int(i)] = float(np.median(px[sel]))
    return quality.Screen(deferred.schema, deferred.product, deferred.window, medians, deferred.outright)


def _run(s: quality.Screen, arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Two chunks, so the gathered medians and ranges span chunks."""
    masks = [s.keep(part) for part in (arr[:2], arr[2:])]
    return np.concatenate(
        [np.ones(2 if i == 0 else len(arr) - 2, bool) if m is None else m for i, m in enumerate(masks)]
    )


def test_a_clean_file_is_confirmed_and_kept_exactly_as_the_two_pass_screen_keeps_it() -> None:
    info, arr = _chunks()
    deferred = quality.screen(None, info, KIND, deferred=True)
    ref = _reference(info, arr)
    kept = _run(deferred, arr)
    assert deferred.confirm()
    assert np.array_equal(kept, _run(ref, arr))
    assert deferred.quality.as_dict() == ref.quality.as_dict()


@pytest.mark.parametrize("field", ["price", "bid_px_03", "ask_px_09"])
@pytest.mark.parametrize("factor", [0.7, 1.3])
def test_a_price_off_its_median_is_not_confirmed(field: str, factor: float) -> None:
    # Given one price inside the static limits but 30 % off the session's median
    info, arr = _chunks()
    med = float(np.median(arr["price"])) / 1e9
    arr[field][3] = np.int64(round(med * factor * 4) / 4 * 1e9)
    # When the deferred screen decodes it
    deferred = quality.screen(None, info, KIND, deferred=True)
    _run(deferred, arr)
    # Then it cannot vouch for its decode, and the two-pass screen drops that record
    assert not deferred.confirm()
    ref = _reference(info, arr)
    kept = _run(ref, arr)
    assert not kept[3]
    assert ref.quality.dropped.get("price_off_median") == 1


def test_a_price_just_inside_the_band_is_confirmed() -> None:
    info, arr = _chunks()
    med = float(np.median(arr["price"])) / 1e9
    arr["ask_px_00"][1] = np.int64(round(med * (1 + quality.BAND) * 4 - 1) / 4 * 1e9)
    deferred = quality.screen(None, info, KIND, deferred=True)
    kept = _run(deferred, arr)
    assert deferred.confirm()
    assert np.array_equal(kept, _run(_reference(info, arr), arr))


@pytest.mark.parametrize(
    "raw", [100_000 * 10**9, 100_000 * 10**9 + 1, 0, -1, 1, -(2**63) + 1, 2**62, -100_000 * 10**9 - 1]
)
def test_the_static_limits_judge_fixed_point_prices_as_their_float_values(raw: int) -> None:
    # Given one level price at or around a limit
    info, arr = _chunks()
    arr["bid_px_05"][2] = raw
    # When the screen judges it
    s = _reference(info, arr)
    kept = _run(s, arr)
    # Then it is out of limits exactly when its float value is (an outright: (0, 100 000])
    px = float(np.float64(raw) / 1e9)
    out = px <= 0 or px > quality.PRICE_MAX
    assert s.quality.dropped.get("price_out_of_limits", 0) == int(out)
    assert bool(kept[2]) is (not out) or s.quality.dropped.get("price_off_median", 0) == 1
