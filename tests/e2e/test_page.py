"""The trader's page in headless Debian chromium, against the real app over HTTP on a generated lake.

It loads, draws the candles, volume and the six levels, replays bar by bar with the future hidden,
shows the outcome probabilities for a level in its zone, lists the nearest historical setups on a
click and opens one of them; no console errors and no request leaves the app's origin. A
screenshot lands in tests/artifacts/page.png. The "Evaluation" panel shows the latest walk-forward
report (or says there is none).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest

pytestmark = pytest.mark.e2e

ET = ZoneInfo("America/New_York")
LEVELS = ("PM_HIGH", "PM_LOW", "OR_HIGH", "OR_LOW", "SMA_90", "EMA_20")
START_MIN, END_MIN = 9 * 60 + 30, 12 * 60 + 30
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TIMEOUT_MS = 15_000


def _et(iso: str) -> dt.datetime:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(ET)


def _minutes(t: dt.datetime | dt.time) -> float:
    return t.hour * 60 + t.minute + t.second / 60


def _hhmm(minutes: float) -> str:
    m = int(minutes)
    return f"{m // 60:02d}:{m % 60:02d}"


def _snap(minutes: float) -> int:
    """The page's replay grid: the 2-minute bar close at or before ``minutes``, 09:30–12:30."""
    s = START_MIN + int((minutes - START_MIN) // 2) * 2
    return max(START_MIN, min(END_MIN, s))


@dataclass
class Browsing:
    """What one page did: console messages, page errors and every request URL."""

    origin: str
    console: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        bad = [text for kind, text in self.console if kind == "error"]
        assert not bad, f"console errors: {bad}"
        assert not self.errors, f"page errors: {self.errors}"
        assert self.requests, "no requests seen"
        foreign = [u for u in self.requests if f"{urlsplit(u).scheme}://{urlsplit(u).netloc}" != self.origin]
        assert not foreign, f"requests outside {self.origin}: {foreign}"


@pytest.fixture
def page(browser: Any, app_url: str) -> Iterator[tuple[Any, Browsing]]:
    # A browser far from New York: the page must still read ET.
    context = browser.new_context(
        viewport={"width": 1440, "height": 900}, device_scale_factor=1, timezone_id="Asia/Tokyo"
    )
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    log = Browsing(origin=app_url)
    pg.on("console", lambda m: log.console.append((m.type, m.text)))
    pg.on("pageerror", lambda e: log.errors.append(str(e)))
    pg.on("request", lambda r: log.requests.append(r.url))
    yield pg, log
    context.close()


def _chart(pg: Any) -> dict[str, Any]:
    """The plotly graph div's traces, as the browser holds them."""
    return pg.evaluate(
        """() => {
            const gd = document.getElementById('chart');
            return {traces: (gd.data || []).map(t => ({
                type: t.type, name: t.name, yaxis: t.yaxis || 'y', x: t.x || [],
                dash: t.line && t.line.dash, color: t.line && t.line.color,
                y: t.y || [], close: t.close || []}))};
        }"""
    )


def _candles(pg: Any) -> list[str]:
    traces = _chart(pg)["traces"]
    return next(t["x"] for t in traces if t["type"] == "candlestick")


def _expected_candles(app_url: str, date: str, now_min: float) -> list[str]:
    """The API's bars closed by the replay time, as the page must draw them: ET wall clock, at the
    bar's open (t is the close)."""
    bars = httpx.get(f"{app_url}/v1/days/{date}/bars", timeout=30).json()["bars"]
    opens = [_et(b["t"]) - dt.timedelta(minutes=2) for b in bars if _minutes(_et(b["t"])) <= now_min]
    return [o.strftime("%Y-%m-%d %H:%M:%S") for o in opens]


def _wait_ready(pg: Any) -> None:
    pg.wait_for_selector("body[data-ready='1']")
    pg.wait_for_function("() => (document.getElementById('chart').data || []).length > 0")


def _last_day(app_url: str) -> tuple[str, list[dict[str, Any]]]:
    days = httpx.get(f"{app_url}/v1/days", timeout=30).json()["days"]
    assert len(days) == 6, days
    indexed = sorted(d["date"] for d in days if d["indexed"])
    assert indexed, days
    last = indexed[-1]
    r = httpx.get(f"{app_url}/v1/days/{last}/signals", params={"horizon": 8, "k": 50}, timeout=60)
    r.raise_for_status()
    return last, r.json()["signals"]


def _signal_with_neighbours(app_url: str, date: str, signals: list[dict[str, Any]]) -> dict[str, Any]:
    """A signal after 09:30 whose level has earlier setups to list, preferring late morning (a
    fuller chart for the screenshot) and at least three setups."""
    assert signals, f"no signals on {date}"
    late_morning = 11 * 60
    candidates = sorted(
        (s for s in signals if _minutes(_et(s["t"])) > START_MIN),
        key=lambda s: abs(_minutes(_et(s["t"])) - late_morning),
    )
    fallback = None
    for s in candidates[:40]:
        body = {"date": date, "time": _et(s["t"]).strftime("%H:%M"), "level_kind": s["level_kind"], "k": 10}
        r = httpx.post(f"{app_url}/v1/similar", json=body, timeout=30)
        r.raise_for_status()
        found = len(r.json()["neighbours"])
        if found >= 3:
            return s
        if found and fallback is None:
            fallback = s
    if fallback is None:
        pytest.fail(f"no signal on {date} after 09:30 has earlier setups")
    return fallback


def test_replay_probabilities_and_neighbours(page: tuple[Any, Browsing], app_url: str) -> None:
    pg, log = page
    date, signals = _last_day(app_url)
    sig = _signal_with_neighbours(app_url, date, signals)
    kind = sig["level_kind"]
    sig_min = _minutes(_et(sig["t"]))
    t0 = _snap(sig_min) - 2

    # The page opens the day at the time in its URL: one bar before the signal.
    pg.goto(f"{app_url}/?date={date}&t={_hhmm(t0)}")
    _wait_ready(pg)
    assert pg.input_value("#date-select") == date
    assert pg.text_content("#time-label") == _hhmm(t0)

    # Candles, volume and the six levels, styled as a trader's chart.
    traces = _chart(pg)["traces"]
    assert traces[0]["type"] == "candlestick"
    assert any(t["type"] == "bar" and t["yaxis"] == "y2" for t in traces), "volume on its own axis"
    by_name = {t["name"]: t for t in traces if t["type"] == "scatter"}
    assert set(LEVELS) <= set(by_name), sorted(by_name)
    assert by_name["PM_HIGH"]["dash"] == by_name["PM_LOW"]["dash"] == "dot"
    assert by_name["OR_HIGH"]["dash"] == by_name["OR_LOW"]["dash"] == "solid"
    assert by_name["SMA_90"]["dash"] == by_name["EMA_20"]["dash"] == "dot"
    assert any(v is not None for v in by_name["PM_HIGH"]["y"]), "PM_HIGH drawn"
    # the moving averages start with the candles (at the first candle's close, 09:00), not at 09:30
    first_close = dt.datetime.fromisoformat(min(_candles(pg))) + dt.timedelta(minutes=2)
    for ma in ("SMA_90", "EMA_20"):
        xs = [x for x, y in zip(by_name[ma]["x"], by_name[ma]["y"], strict=True) if y is not None]
        assert xs, ma
        assert dt.datetime.fromisoformat(min(xs)[:19]) <= first_close, (ma, min(xs), first_close)

    # The future is hidden: no candle closes after the replay time.
    before = _candles(pg)
    assert before, "candles drawn"
    assert before == _expected_candles(app_url, date, t0), "candles in ET, none after the replay time"

    # Step forward one bar: the clock moves and one more candle appears.
    pg.click("#btn-fwd")
    pg.wait_for_function(f"() => document.getElementById('time-label').textContent === '{_hhmm(t0 + 2)}'")
    after = _candles(pg)
    assert len(after) == len(before) + 1
    assert parse_qs(urlsplit(pg.url).query)["t"] == [_hhmm(t0 + 2)]

    # The level in its zone has a panel with the three probabilities, interval, n and n_eff.
    panel = pg.locator(f"#panels .level[data-kind='{kind}']")
    panel.wait_for()
    rows = panel.locator(".prow")
    assert rows.count() == 3
    shown = {rows.nth(i).get_attribute("data-outcome"): rows.nth(i) for i in range(3)}
    assert set(shown) == {"BREAK", "REJECT", "CHOP"}
    for outcome, row in shown.items():
        assert row.locator(".p-num").text_content() == f"{math.floor(sig['p'][outcome] * 100 + 0.5)}%"
        assert row.locator(".whisker").count() == 1
    foot = panel.locator(".level-foot").text_content() or ""
    assert f"n {sig['n']}" in foot
    assert "n_eff" in foot
    tip = panel.locator(".level-foot [data-tip]").first.get_attribute("data-tip") or ""
    assert "effective sample size" in tip
    # The base rate arrives next to the probability.
    pg.wait_for_function(
        f"""() => [...document.querySelectorAll("#panels .level[data-kind='{kind}'] .br")]
                  .every(e => /base \\d+%/.test(e.textContent))"""
    )

    # Clicking a probability lists the nearest historical setups.
    shown["BREAK"].click()
    pg.wait_for_selector("#similar tr.nb")
    neighbours = pg.locator("#similar tr.nb")
    assert 1 <= neighbours.count() <= 10
    # … with the learned similarity's answer and what the evaluation says of it at this level kind
    setup = pg.locator("#setup-line").inner_text()
    assert re.search(r"Learned: BREAK \d+%", setup), setup
    assert re.search(r"model [0-9a-f]{12} through 20\d\d-\d\d-\d\d", setup), setup
    assert any(v in setup for v in ("AUC", "no measured edge", "not yet measured")), setup
    outcomes = neighbours.locator(".outcome")
    for i in range(outcomes.count()):
        cls = outcomes.nth(i).get_attribute("class") or ""
        assert any(c in cls for c in ("o-break", "o-reject", "o-chop")), cls
    pg.wait_for_timeout(150)  # let plotly settle before the picture
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "page.png"), full_page=False)

    # Clicking a neighbour opens that day at that time.
    first = neighbours.first
    nb_date = first.get_attribute("data-date") or ""
    nb_time = first.get_attribute("data-time") or ""
    assert nb_date < date, "neighbours come from strictly earlier days"
    nb_min = _snap(_minutes(dt.time.fromisoformat(nb_time)))
    first.click()
    pg.wait_for_function(
        f"""() => document.getElementById('date-select').value === '{nb_date}'
                  && document.getElementById('time-label').textContent === '{_hhmm(nb_min)}'
                  && (document.getElementById('chart').data[0].x || []).every(x => x.startsWith('{nb_date}'))
                  && (document.getElementById('chart').data[0].x || []).length > 0"""
    )
    # That day is in EST (the lake's last day is in EDT): still New York wall clock.
    assert _candles(pg) == _expected_candles(app_url, nb_date, nb_min)
    q = parse_qs(urlsplit(pg.url).query)
    assert q["date"] == [nb_date]
    assert q["t"] == [_hhmm(nb_min)]
    # Back returns to the day we came from.
    pg.go_back()
    pg.wait_for_function(f"() => document.getElementById('date-select').value === '{date}'")

    log.assert_clean()


def test_opens_latest_indexed_day(page: tuple[Any, Browsing], app_url: str) -> None:
    pg, log = page
    date, _ = _last_day(app_url)
    pg.goto(f"{app_url}/")
    _wait_ready(pg)
    assert pg.input_value("#date-select") == date
    q = parse_qs(urlsplit(pg.url).query)
    assert q["date"] == [date]
    # Scrub the slider back to the open: fewer candles, the clock follows.
    full = len(_candles(pg))
    pg.eval_on_selector(
        "#time-slider", "e => { e.value = '570'; e.dispatchEvent(new Event('input', {bubbles: true})); }"
    )
    pg.wait_for_function("() => document.getElementById('time-label').textContent === '09:30'")
    assert len(_candles(pg)) < full
    log.assert_clean()


def test_evaluation_report_panel(page: tuple[Any, Browsing], app_url: str, page_lake: Any) -> None:
    from spymaster import evaluation

    pg, log = page
    pg.goto(f"{app_url}/")
    _wait_ready(pg)

    # No evaluation in the lake yet: the panel opens and says so (the API answers 404 with a reason).
    pg.click("#btn-report")
    pg.wait_for_selector("#report-panel:not([hidden]) .report-none")
    assert "No evaluation report" in (pg.text_content("#report-body") or "")
    pg.keyboard.press("Escape")
    pg.wait_for_selector("#report-panel", state="hidden")

    # A walk-forward evaluation writes its report to the lake; the page shows it.
    days = httpx.get(f"{app_url}/v1/days", timeout=30).json()["days"]
    last = dt.date.fromisoformat(max(d["date"] for d in days))
    rep = evaluation.evaluate(page_lake, last, None, min_train_days=1, boosted=False, run_ablation=False)
    pg.click("#btn-report")
    pg.wait_for_selector("#report-md")
    # the markdown is rendered: its pipe tables are tables, its images are the plots, no raw syntax
    md = pg.text_content("#report-md") or ""
    assert "|---" not in md
    assert "![" not in md
    assert "**" not in md
    tables = sum(
        1
        for i, line in enumerate(rep.markdown.splitlines()[1:], 1)
        if line.startswith("|---") or line.startswith("|:-")
    )
    assert pg.locator("#report-md table").count() == tables > 0
    assert pg.locator("#report-md .md-h").count() == sum(
        1 for line in rep.markdown.splitlines() if line.startswith("#")
    )
    meta = pg.text_content("#report-meta") or ""
    assert rep.run_id in meta
    tested = rep.metrics["test_dates"]
    assert f"test days {tested[0]} → {tested[-1]}" in meta
    assert "…" not in meta
    assert pg.locator(".report-goals tbody tr").count() == len(rep.metrics["goals"])
    assert "kNN served" in (pg.text_content(".report-scores") or "")
    for plot in ("reliability", "lift"):
        # the plots load lazily, as a reader scrolls to them (the learned section comes first)
        pg.locator(f"#report-md .report-plot[data-plot='{plot}']").scroll_into_view_if_needed()
        pg.wait_for_function(
            f"""() => {{
                const img = document.querySelector("#report-md .report-plot[data-plot='{plot}'] img");
                return img && img.complete && img.naturalWidth > 100;
            }}"""
        )
    pg.click("#report-close")
    pg.wait_for_selector("#report-panel", state="hidden")
    assert pg.evaluate("() => document.activeElement && document.activeElement.id") == "btn-report"

    # The only console error is the browser's note of the expected 404 before the report existed.
    errors = [text for kind, text in log.console if kind == "error"]
    assert all("404" in text for text in errors), errors
    assert len(errors) <= 1, errors
    assert not log.errors, log.errors
    origin = urlsplit(app_url)
    assert all(urlsplit(u).netloc == origin.netloc for u in log.requests), log.requests


@pytest.mark.parametrize(
    ("wanted", "says"),
    [
        ("2026-03-07", "2026-03-07 is a Saturday, not a trading day: showing"),
        ("2026-01-05", "2026-01-05 is not in the lake"),
        ("2026-02-31", "is not a date (YYYY-MM-DD)"),
    ],
)
def test_a_bad_date_in_the_url_is_named(
    page: tuple[Any, Browsing], app_url: str, wanted: str, says: str
) -> None:
    pg, log = page
    last, _ = _last_day(app_url)
    pg.goto(f"{app_url}/?date={wanted}")
    _wait_ready(pg)
    banner = pg.locator("#banner")
    assert banner.is_visible()
    text = banner.text_content() or ""
    assert says in text
    assert f"showing {last} instead" in text
    log.assert_clean()


def test_a_panel_resting_on_no_earlier_setup_says_prior_only(
    page: tuple[Any, Browsing], app_url: str
) -> None:
    # The lake's first day has no earlier days: its signals rest on the prior alone (n = 0)
    pg, log = page
    days = sorted(
        d["date"] for d in httpx.get(f"{app_url}/v1/days", timeout=30).json()["days"] if d["indexed"]
    )
    first = days[0]
    sig = httpx.get(f"{app_url}/v1/days/{first}/signals", params={"horizon": 8, "k": 50}, timeout=60).json()
    at = [s for s in sig["signals"] if _minutes(_et(s["t"])) > START_MIN]
    assert at, sig
    assert all(s["n"] == 0 for s in at)
    pg.goto(f"{app_url}/?date={first}&t={_hhmm(_snap(_minutes(_et(at[0]['t']))))}")
    _wait_ready(pg)
    pg.wait_for_selector("#panels .level")
    notes = pg.locator("#panels .thin")
    assert notes.count() >= 1
    assert "prior only" in notes.first.inner_text()
    log.assert_clean()


def test_hover_header_names_the_bar_under_the_cursor(browser: Any, app_url: str) -> None:
    pg = browser.new_page(viewport={"width": 1280, "height": 860})
    pg.set_default_timeout(TIMEOUT_MS)
    try:
        date, _ = _last_day(app_url)
        pg.goto(f"{app_url}/?date={date}&t=12:30")
        _wait_ready(pg)
        # the 10:52 bar (10:52–10:54 ET): hovering it must say 10:52, not the middle of its period
        pos = pg.evaluate(
            """() => {
                const gd = document.getElementById('chart');
                const xs = gd.data[0].x;
                const i = xs.findIndex((x) => String(x).includes('10:52'));
                const fl = gd._fullLayout;
                const box = gd.getBoundingClientRect();
                return {i, x: box.left + fl._size.l + fl.xaxis.d2p(xs[i]) + 2,
                        y: box.top + fl._size.t + fl._size.h * 0.3};
            }"""
        )
        assert pos["i"] >= 0, pos
        pg.mouse.move(pos["x"], pos["y"])
        pg.wait_for_function("() => document.querySelector('#chart .hoverlayer').textContent.length > 0")
        text = pg.evaluate("() => document.querySelector('#chart .hoverlayer').textContent")
        assert "10:52" in text, text
        assert "10:53" not in text, text
    finally:
        pg.close()


def test_narrow_window_setups_list_and_axis_units(browser: Any, app_url: str) -> None:
    # A 420 px wide window (a phone): the controls wrap, the slider is whole and usable
    context = browser.new_context(viewport={"width": 420, "height": 860}, device_scale_factor=1)
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    log = Browsing(origin=app_url)
    pg.on("console", lambda m: log.console.append((m.type, m.text)))
    pg.on("pageerror", lambda e: log.errors.append(str(e)))
    pg.on("request", lambda r: log.requests.append(r.url))
    try:
        date, signals = _last_day(app_url)
        sig = _signal_with_neighbours(app_url, date, signals)
        t = _snap(_minutes(_et(sig["t"])))
        pg.goto(f"{app_url}/?date={date}&t={_hhmm(t)}")
        _wait_ready(pg)
        box = pg.locator("#time-slider").bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 420
        assert box["width"] >= 200, box
        for ctl in ("#btn-start", "#btn-play", "#btn-end", "#time-label"):
            b = pg.locator(ctl).bounding_box()
            assert b is not None
            assert b["x"] >= 0
            assert b["x"] + b["width"] <= 420, (ctl, b)
        assert pg.evaluate("() => document.documentElement.scrollWidth") <= 420

        # The volume axis says its unit
        title = pg.evaluate("() => document.getElementById('chart').layout.yaxis2.title.text")
        assert title == "contracts"

        # The smoothed probabilities say what they are
        panel = pg.locator(f"#panels .level[data-kind='{sig['level_kind']}']")
        panel.wait_for()
        foot = panel.locator(".level-foot").text_content() or ""
        assert "smoothed over bars: Break " in foot

        # The setups list shows only setups that carry weight, and says how many
        panel.locator(".prow[data-outcome='BREAK']").click()
        pg.wait_for_selector("#similar tr.nb")
        body = {"date": date, "time": _hhmm(t), "level_kind": sig["level_kind"], "k": 10}
        ans = httpx.post(f"{app_url}/v1/similar", json=body, timeout=30).json()
        weighted = [n for n in ans["neighbours"] if n["weight"] > 0 and n["similarity"] > 0]
        rows = pg.locator("#similar tr.nb")
        assert rows.count() == len(weighted)
        sims = [float(rows.nth(i).locator("td").nth(4).text_content() or "nan") for i in range(rows.count())]
        assert all(s > 0 for s in sims), sims
        # … and each one's share of the estimate, its weight over the listed setups' total
        shares = [
            float((rows.nth(i).locator("td.weight").text_content() or "nan").rstrip("%"))
            for i in range(rows.count())
        ]
        total = sum(n["weight"] for n in weighted)
        want = [100 * n["weight"] / total for n in weighted]
        assert all(abs(a - b) <= 0.051 for a, b in zip(shares, want, strict=True)), (shares, want)
        count = pg.text_content("#similar-count") or ""
        assert count.startswith(f"{len(weighted)} nearest setup")
        assert "of 10 asked" in count
        log.assert_clean()
    finally:
        context.close()


def _box(pg: Any, selector: str, text: str) -> dict[str, float]:
    # plotly redraws its annotations as the day settles: poll until one is laid out
    box = None
    for _ in range(50):
        loc = pg.locator(selector).filter(has_text=text).first
        loc.wait_for()
        box = loc.bounding_box()
        if box is not None:
            break
        pg.wait_for_timeout(100)
    assert box is not None, (selector, text)
    return dict(box)


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


def test_chart_labels_do_not_collide(page: tuple[Any, Browsing], app_url: str) -> None:
    pg, log = page
    date, signals = _last_day(app_url)
    pg.goto(f"{app_url}/?date={date}&t=12:30")
    _wait_ready(pg)
    # "now 12:30" stays clear of the price axis' labels
    now = _box(pg, "g.annotation", "now 12:30")
    ticks = pg.locator("g.ytick text")
    for i in range(ticks.count()):
        tb = ticks.nth(i).bounding_box()
        if tb:
            assert not _overlap(now, dict(tb)), (now, tb)
    # a neighbour's day opens at the setup's time: its "setup" label and the "now" label stay apart
    sig = _signal_with_neighbours(app_url, date, signals)
    pg.goto(f"{app_url}/?date={date}&t={_hhmm(_snap(_minutes(_et(sig['t']))))}")
    _wait_ready(pg)
    pg.locator(f"#panels .level[data-kind='{sig['level_kind']}'] .prow[data-outcome='BREAK']").click()
    pg.wait_for_selector("#similar tr.nb")
    first = pg.locator("#similar tr.nb").first
    nb_date = first.get_attribute("data-date") or ""
    first.click()
    pg.wait_for_function(f"() => document.getElementById('date-select').value === '{nb_date}'")
    setup = _box(pg, "g.annotation", "setup ")
    now = _box(pg, "g.annotation", "now ")
    assert not _overlap(setup, now), (setup, now)
    log.assert_clean()


def test_a_day_without_options_says_its_dealer_features_are_missing(
    page: tuple[Any, Browsing], app_url: str
) -> None:
    pg, log = page
    date, _ = _last_day(app_url)
    days = httpx.get(f"{app_url}/v1/days", timeout=30).json()
    assert all(d["options"] for d in days["days"])  # the generated lake has every options file
    # As the API answers for a futures-only day (its options files never landed):
    for d in days["days"]:
        d["options"] = d["date"] != date
    pg.route("**/v1/days", lambda route: route.fulfill(json=days))
    pg.goto(f"{app_url}/?date={date}")
    _wait_ready(pg)
    note = pg.locator("#day-note")
    assert note.is_visible()
    assert f"No ES options data for {date}" in (note.text_content() or "")
    label = pg.locator(f"#date-select option[value='{date}']").text_content() or ""
    assert label.endswith("· no options")
    other = next(d["date"] for d in days["days"] if d["date"] != date)
    pg.select_option("#date-select", other)
    pg.wait_for_function(f"() => document.getElementById('date-select').value === '{other}'")
    assert not note.is_visible()
    log.assert_clean()
