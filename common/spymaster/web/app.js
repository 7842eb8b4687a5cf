// Spymaster page: a day's ES chart with its six levels, a bar-by-bar replay, and for each level in
// its zone the outcome probabilities as the trader would have seen them at that bar. Plain ES
// module, no build step; plotly.js comes from the app (static/vendor/plotly.min.js).
// Every request goes to the page's own origin, relative to the page's URL (so a path prefix works).

const LEVELS = ["PM_HIGH", "PM_LOW", "OR_HIGH", "OR_LOW", "SMA_90", "EMA_20"];
const OUTCOMES = ["BREAK", "REJECT", "CHOP"];
const HORIZON = 8;
const SIGNAL_K = 50;
const SIMILAR_K = 10;
const START_MIN = 9 * 60 + 30; // 09:30 ET
const END_MIN = 12 * 60 + 30; // 12:30 ET
const CHART_FROM_MIN = 9 * 60; // bars start at 09:00 ET
const BAR_MIN = 2;
// Minutes since 09:30 → time bucket (features.TIME_BUCKETS: [0,15) [15,30) [30,60) [60,120) [120,180]).
const BUCKET_EDGES = [15, 30, 60, 120];

const COLORS = {
  up: "#26a69a",
  down: "#ef5350",
  grid: "#1f2630",
  axis: "#8a93a3",
  text: "#d1d4dc",
  bg: "#0d1117",
  now: "#e6edf3",
  focus: "#58a6ff",
};
const LEVEL_STYLE = {
  PM_HIGH: { color: "#b0b7c3", dash: "dot", width: 1.6, label: "PM high" },
  PM_LOW: { color: "#b0b7c3", dash: "dot", width: 1.6, label: "PM low" },
  OR_HIGH: { color: "#3fb950", dash: "solid", width: 1.8, label: "OR high" },
  OR_LOW: { color: "#f85149", dash: "solid", width: 1.8, label: "OR low" },
  SMA_90: { color: "#e3b341", dash: "dot", width: 1.8, label: "SMA 90" },
  EMA_20: { color: "#bc8cff", dash: "dot", width: 1.8, label: "EMA 20" },
};
const OUTCOME_TEXT = {
  BREAK: "price went ≥ 1 ATR through the level first",
  REJECT: "price went ≥ 1 ATR back away from the level first",
  CHOP: "neither (or both in one step) within the horizon",
};
const PLAY_ICON = '<svg viewBox="0 0 16 16" aria-hidden="true"><path d="M4 2.5v11L13 8z"/></svg>';
const PAUSE_ICON =
  '<svg viewBox="0 0 16 16" aria-hidden="true"><rect x="3.5" y="2.5" width="3" height="11"/><rect x="9.5" y="2.5" width="3" height="11"/></svg>';
const N_EFF_TIP =
  "n_eff — effective sample size: (Σw)² / Σw² over the similarity weights of the n nearest " +
  "historical setups. It says how many equally-weighted setups the estimate is worth; " +
  "a small n_eff means the probabilities lean on the base rate and the interval is wide.";
const BASE_TIP =
  "Base rate — how often each outcome happened over all earlier setups of the same level, " +
  "direction and time of day (before this day). Compare the probability with it.";

// ---------------------------------------------------------------------------------------------
// State

const params = new URLSearchParams(window.location.search);
const state = {
  key: params.get("key") || null,
  days: [],
  date: null,
  now: END_MIN, // replay time, minutes since ET midnight, on the 2-minute grid
  bars: [],
  levels: {}, // kind → [{min, x, value}]
  signals: [], // sorted by time
  loadToken: 0,
  playing: false,
  timer: null,
  baseRates: new Map(), // "date|kind|direction|bucket" → {BREAK, REJECT, CHOP} | "pending" | "none"
  selection: null, // {kind, outcome, time}
  similarToken: 0,
  focus: null, // {date, time, kind} of a neighbour opened from the list
  report: null, // the latest evaluation report, once loaded
  live: null, // the live session being followed: {ctl, date, lag, dropped, coalesced, recordTs, status}
};

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
};

// ---------------------------------------------------------------------------------------------
// Time: the API speaks UTC ("…Z"); the trader reads New York wall-clock.

const etParts = new Intl.DateTimeFormat("en-US", {
  timeZone: "America/New_York",
  hourCycle: "h23",
  year: "numeric",
  month: "2-digit",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});

function toET(iso) {
  const parts = {};
  for (const p of etParts.formatToParts(new Date(iso))) parts[p.type] = p.value;
  const hh = Number(parts.hour) % 24;
  const mm = Number(parts.minute);
  const ss = Number(parts.second);
  const date = `${parts.year}-${parts.month}-${parts.day}`;
  const hms = `${pad(hh)}:${pad(mm)}:${pad(ss)}`;
  // A naive wall-clock string: plotly draws it as is, so the axis reads ET.
  return { date, min: hh * 60 + mm + ss / 60, hms, wall: `${date} ${hms}` };
}

const pad = (n) => String(n).padStart(2, "0");
const hhmm = (min) => `${pad(Math.floor(min / 60))}:${pad(Math.floor(min % 60))}`;
const wallAt = (date, min) => `${date} ${hhmm(min)}:${pad(Math.round((min % 1) * 60))}`;

function parseTime(text) {
  const m = /^(\d{1,2}):(\d{2})(?::(\d{2}))?$/.exec(text || "");
  if (!m) return null;
  const min = Number(m[1]) * 60 + Number(m[2]) + (m[3] ? Number(m[3]) / 60 : 0);
  return Number.isFinite(min) ? min : null;
}

/** The replay grid: 09:30, 09:32, … 12:30; a time between bar closes goes to the close before it. */
function snap(min) {
  const s = START_MIN + Math.floor((min - START_MIN + 1e-9) / BAR_MIN) * BAR_MIN;
  return Math.min(END_MIN, Math.max(START_MIN, s));
}

function bucketOf(min) {
  const m = min - START_MIN;
  let b = 0;
  while (b < BUCKET_EDGES.length && m >= BUCKET_EDGES[b]) b += 1;
  return b;
}

// ---------------------------------------------------------------------------------------------
// API

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

function detailText(body, fallback) {
  const d = body && body.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) return d.map((e) => e.msg || JSON.stringify(e)).join("; ");
  return fallback;
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (state.key) headers["X-API-Key"] = state.key;
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (!resp.ok) throw new ApiError(resp.status, detailText(data, `${resp.status} ${resp.statusText}`));
  return data;
}

function showBanner(text) {
  const b = $("banner");
  if (!text) {
    b.hidden = true;
    b.textContent = "";
    return;
  }
  b.textContent = text;
  b.hidden = false;
}

function explain(err) {
  if (err instanceof ApiError) {
    if (err.status === 401) return "The API wants a key: open the page with ?key=… in its URL.";
    return `API ${err.status}: ${err.message}`;
  }
  return `Request failed: ${err && err.message ? err.message : err}`;
}

// ---------------------------------------------------------------------------------------------
// URL: ?date=YYYY-MM-DD&t=HH:MM (and ?key=… kept as given)

function urlFor(date, min) {
  const p = new URLSearchParams(window.location.search);
  if (date) p.set("date", date);
  p.set("t", hhmm(min));
  // ":" is legal in a query; keep "t=10:14" readable.
  return `${window.location.pathname}?${p.toString().replace(/%3A/gi, ":")}`;
}

function syncUrl(push = false) {
  const url = urlFor(state.date, state.now);
  if (url === `${window.location.pathname}${window.location.search}`) return;
  const st = { date: state.date, t: hhmm(state.now) };
  if (push) history.pushState(st, "", url);
  else history.replaceState(st, "", url);
}

// ---------------------------------------------------------------------------------------------
// Loading

async function loadHealth() {
  try {
    const h = await api("health");
    const n = Number(h.episodes || 0).toLocaleString("en-US");
    const v = h.table_version === null || h.table_version === undefined ? "—" : `v${h.table_version}`;
    $("health").replaceChildren(el("span", { class: "dot ok" }), `${n} episodes · table ${v}`);
  } catch (err) {
    $("health").replaceChildren(el("span", { class: "dot bad" }), "API unavailable");
    showBanner(explain(err));
  }
}

async function loadDays() {
  const data = await api("v1/days");
  state.days = [...(data.days || [])].sort((a, b) => (a.date < b.date ? 1 : -1));
  const sel = $("date-select");
  sel.replaceChildren(
    ...state.days.map((d) =>
      el(
        "option",
        { value: d.date },
        `${d.date} ${weekday(d.date)}${d.indexed ? "" : " · not indexed"} · ${d.episodes} ep${d.options === false ? " · no options" : ""}`,
      ),
    ),
  );
}

function weekday(date) {
  const [y, m, d] = date.split("-").map(Number);
  return ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"][new Date(Date.UTC(y, m - 1, d)).getUTCDay()];
}

async function openDay(date, min, { push = false } = {}) {
  stop();
  const token = ++state.loadToken;
  const changed = date !== state.date || !state.bars.length;
  state.date = date;
  state.now = snap(min);
  $("date-select").value = date;
  const info = state.days.find((d) => d.date === date);
  const note = $("day-note");
  note.hidden = !(info && info.options === false);
  note.textContent = note.hidden
    ? ""
    : `No ES options data for ${date}: its dealer (gamma exposure) features are missing; the probabilities rest on price, flow, book and tape alone.`;
  syncUrl(push);
  if (!changed) {
    render();
    return;
  }
  state.bars = [];
  state.levels = {};
  state.signals = [];
  setEmpty("Loading " + date + " …");
  render();
  try {
    const q = encodeURIComponent(date);
    // The chart does not wait on the signals, and a day without them still draws.
    let signalsError = null;
    const [bars, levels, signals] = await Promise.all([
      api(`v1/days/${q}/bars`),
      api(`v1/days/${q}/levels`),
      api(`v1/days/${q}/signals?horizon=${HORIZON}&k=${SIGNAL_K}`).catch((err) => {
        signalsError = err;
        return { signals: [] };
      }),
    ]);
    if (token !== state.loadToken) return; // a newer day was asked for meanwhile
    state.bars = (bars.bars || []).map((b) => {
      const et = toET(b.t);
      return { ...b, min: et.min, x: wallAt(et.date, et.min - BAR_MIN), close_x: et.wall };
    });
    state.levels = {};
    for (const lv of levels.levels || []) {
      state.levels[lv.kind] = (lv.points || []).map((p) => {
        const et = toET(p.t);
        return { min: et.min, x: et.wall, value: p.value };
      });
    }
    state.signals = (signals.signals || [])
      .map((s) => {
        const et = toET(s.t);
        return { ...s, min: et.min, hms: et.hms };
      })
      .sort((a, b) => a.min - b.min);
    showBanner(signalsError ? `No probabilities for ${date}: ${explain(signalsError)}` : null);
    setEmpty(state.bars.length ? null : `No bars for ${date}.`);
  } catch (err) {
    if (token !== state.loadToken) return;
    setEmpty(`Could not load ${date}.`);
    showBanner(explain(err));
  }
  render();
}

function setEmpty(text) {
  const e = $("chart-empty");
  e.hidden = !text;
  e.textContent = text || "";
}

// ---------------------------------------------------------------------------------------------
// Replay

function setNow(min, { url = true } = {}) {
  const s = snap(min);
  if (s === state.now) return;
  state.now = s;
  if (url) syncUrl(false);
  render();
}

function step(delta) {
  setNow(state.now + delta * BAR_MIN);
}

function play() {
  if (state.playing) return;
  if (state.now >= END_MIN) setNow(START_MIN);
  state.playing = true;
  $("btn-play").innerHTML = PAUSE_ICON;
  $("btn-play").setAttribute("aria-label", "Pause");
  $("btn-play").classList.add("on");
  const tick = () => {
    if (state.now >= END_MIN) {
      stop();
      return;
    }
    step(1);
  };
  state.timer = setInterval(tick, 900 / Number($("speed").value || 1));
}

function stop() {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
  state.playing = false;
  $("btn-play").innerHTML = PLAY_ICON;
  $("btn-play").setAttribute("aria-label", "Play");
  $("btn-play").classList.remove("on");
}

// ---------------------------------------------------------------------------------------------
// Live: follow the server's live session (a day happening now, or a replay at N×) over
// server-sent events. Read with fetch, not EventSource, so the API key header goes along.
// Events carry the record time and the engine's lag; bars, levels and answers are merged into
// the same state the batch day fills, so the chart and the panels draw them alike.

async function startLive() {
  stop();
  let st;
  try {
    st = await api("v1/live/status");
  } catch (err) {
    showBanner(explain(err));
    return;
  }
  const ctl = new AbortController();
  ++state.loadToken; // a day still loading must not overwrite the live state
  state.live = { ctl, date: st.date, lag: null, dropped: 0, coalesced: 0, recordTs: null, status: st.engine, streams: {} };
  state.date = st.date;
  state.bars = [];
  state.levels = {};
  state.signals = [];
  state.now = START_MIN;
  state.selection = null;
  document.body.dataset.live = "on";
  $("btn-live").classList.add("on");
  $("btn-live").setAttribute("aria-pressed", "true");
  showBanner(null);
  setEmpty(`Waiting for the live session of ${st.date} …`);
  render();
  readLive(st.date, ctl.signal).catch((err) => {
    if (ctl.signal.aborted) return;
    showBanner(`The live stream stopped: ${explain(err)}`);
    if (state.live) state.live.ended = true;
    renderLiveStatus();
  });
}

function stopLive({ reopen = true } = {}) {
  const live = state.live;
  if (!live) return;
  live.ctl.abort();
  state.live = null;
  document.body.dataset.live = "off";
  $("btn-live").classList.remove("on");
  $("btn-live").setAttribute("aria-pressed", "false");
  render();
  if (reopen) {
    const inLake = state.days.find((d) => d.date === live.date) || state.days[0];
    state.bars = [];
    if (inLake) openDay(inLake.date, END_MIN);
  }
}

async function readLive(date, signal) {
  const headers = { Accept: "text/event-stream" };
  if (state.key) headers["X-API-Key"] = state.key;
  const resp = await fetch(`v1/live/stream?date=${encodeURIComponent(date)}`, { headers, signal, credentials: "same-origin" });
  if (!resp.ok) {
    let data = null;
    try {
      data = await resp.json();
    } catch {
      data = null;
    }
    throw new ApiError(resp.status, detailText(data, `${resp.status} ${resp.statusText}`));
  }
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the server closed the stream");
    buf = (buf + value).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const data = block
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart())
        .join("\n");
      if (data && state.live && !signal.aborted) applyLive(JSON.parse(data));
    }
  }
}

/** A pushed answer as the panels' signal row (a /v1/similar answer is mapped onto one). */
function signalOf(p) {
  if ("answer" in p) {
    // The live engine's anchor: the episode's time and level beside its /v1/similar answer.
    const a = p.answer;
    if (!a || !a.distribution) return {}; // no answer could be made (or answers are off): nothing to draw
    const q = { ...(a.query || {}), ts: p.t, time: p.time, level_kind: p.level_kind, direction: p.direction };
    return { ...signalOf({ ...a, distance: p.distance, query: q }), setup: a.setup, episode_id: p.episode_id };
  }
  if (!p.distribution) return p;
  const q = p.query || {};
  const d = p.distribution;
  return {
    t: q.ts, time: q.time, level_kind: q.level_kind, direction: q.direction, distance: p.distance ?? null,
    p: d.p, interval: d.interval, n: d.n, n_eff: d.n_eff, base_rate: d.base_rate, base_n: d.base_n,
  };
}

function applyLive(ev) {
  const live = state.live;
  if (typeof ev.lag_ms === "number") live.lag = ev.lag_ms;
  if (typeof ev.dropped === "number") live.dropped = ev.dropped;
  if (typeof ev.coalesced === "number") live.coalesced = ev.coalesced;
  if (ev.record_ts_ns) live.recordTs = ev.record_ts_ns;
  const p = ev.payload || {};
  // The chart's window, as the batch day's: 09:00–12:30 ET of the session's date.
  const inChart = (et) => et.date === live.date && et.min >= CHART_FROM_MIN && et.min <= END_MIN + BAR_MIN;
  const et = p.t ? toET(p.t) : null;
  if (ev.kind === "bar" && et && inChart(et) && et.min >= CHART_FROM_MIN + BAR_MIN) {
    const bar = { ...p, min: et.min, x: wallAt(et.date, et.min - BAR_MIN), close_x: et.wall };
    const i = state.bars.findIndex((b) => b.t === p.t);
    if (i >= 0) state.bars[i] = bar;
    else {
      state.bars.push(bar);
      state.bars.sort((a, b) => a.min - b.min);
    }
  } else if (ev.kind === "levels" && et && inChart(et)) {
    for (const [kind, value] of Object.entries(p.levels || {})) {
      const pts = state.levels[kind] || (state.levels[kind] = []);
      const point = { min: et.min, x: et.wall, value };
      if (pts.length && pts[pts.length - 1].min === et.min) pts[pts.length - 1] = point;
      else if (!pts.length || pts[pts.length - 1].min < et.min) pts.push(point);
    }
  } else if (ev.kind === "answer") {
    const sig = signalOf(p);
    if (sig.t && sig.level_kind) {
      const at = toET(sig.t);
      const row = { ...sig, min: at.min, hms: at.hms };
      const i = state.signals.findIndex((s) => s.t === row.t && s.level_kind === row.level_kind);
      if (i >= 0) state.signals[i] = row;
      else {
        state.signals.push(row);
        state.signals.sort((a, b) => a.min - b.min);
      }
    }
  } else if (ev.kind === "streams" && ev.level) {
    live.streams[ev.level] = p; // the level's /v1/days/{date}/streams answer as of this bar close
  } else if (ev.kind === "status") {
    live.status = { ...live.status, ...p }; // a quiet-stream status carries the push counters only
  }
  if (live.recordTs) {
    const rec = toET(new Date(Number(live.recordTs) / 1e6).toISOString());
    // The previous evening's Globex hours come before the chart's day: the clock waits at 09:30.
    state.now = rec.date === live.date ? Math.min(END_MIN, Math.max(START_MIN, rec.min)) : START_MIN;
  }
  scheduleLiveRender();
}

function scheduleLiveRender() {
  if (state.live.pending) return;
  state.live.pending = true;
  requestAnimationFrame(() => {
    if (!state.live) return;
    state.live.pending = false;
    setEmpty(state.bars.length ? null : `Waiting for the live session of ${state.live.date} …`);
    render();
  });
}

function renderLiveStatus() {
  const box = $("live-status");
  const live = state.live;
  if (!live) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  box.hidden = false;
  const st = live.status || {};
  const clock = live.recordTs ? toET(new Date(Number(live.recordTs) / 1e6).toISOString()).hms : "--:--:--";
  const lag = live.lag === null ? "—" : `${live.lag.toFixed(1)} ms`;
  const warn = live.dropped > 0 || (live.lag !== null && live.lag > 100) || live.ended;
  box.className = `live-status${warn ? " warn" : ""}`;
  const running = st.running === false ? "ended" : live.ended ? "stopped" : "live";
  const label = st.label ? ` · ${st.label}` : "";
  box.replaceChildren(
    el("span", { class: `dot ${running === "live" ? "ok" : "bad"}` }),
    el("span", { class: "num", id: "live-clock", title: `${live.date}: record time of the last update (ET)` }, clock),
    `${label} · `,
    el("span", { class: "num", id: "live-lag", title: "engine lag: records' arrival → update" }, `lag ${lag}`),
    " · ",
    el(
      "span",
      {
        class: "num",
        id: "live-drops",
        title: `updates this page lost to a full queue; ${live.coalesced} more were replaced by a newer one (a growing bar, newer state)`,
      },
      `dropped ${live.dropped}`,
    ),
    st.source && st.source.reconnects ? ` · ${st.source.reconnects} reconnects` : "",
    running === "live" ? "" : ` · ${running}`,
  );
}

// ---------------------------------------------------------------------------------------------
// Rendering

function render() {
  $("time-slider").value = String(state.now);
  $("time-label").textContent = hhmm(state.now);
  $("panels-time").textContent = hhmm(state.now);
  $("btn-back").disabled = state.now <= START_MIN;
  $("btn-start").disabled = state.now <= START_MIN;
  $("btn-fwd").disabled = state.now >= END_MIN;
  $("btn-end").disabled = state.now >= END_MIN;
  if (state.live) {
    for (const id of ["btn-start", "btn-back", "btn-fwd", "btn-end", "btn-play", "time-slider", "speed"]) $(id).disabled = true;
  } else {
    for (const id of ["btn-play", "time-slider", "speed"]) $(id).disabled = false;
  }
  renderLiveStatus();
  renderChart();
  renderPanels();
  renderStreams(); // issue 15: the streams panel under the chart
}

function visibleBars() {
  // Live, the bar still forming (its close ahead of the record clock) is drawn as it grows.
  const ahead = state.live ? BAR_MIN : 0;
  return state.bars.filter((b) => b.min <= state.now + ahead + 1e-6);
}

function yRange(bars, levelValues) {
  if (!bars.length) return undefined;
  let lo = Math.min(...bars.map((b) => b.low));
  let hi = Math.max(...bars.map((b) => b.high));
  // Levels near price widen the view (a trader wants the PM high a few points away on screen);
  // a level far away does not squash the candles.
  const reach = Math.max(1.5 * (hi - lo), 0.0025 * hi);
  for (const v of levelValues) {
    if (v >= lo - reach && v <= hi + reach) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  const padding = Math.max((hi - lo) * 0.06, 0.5);
  return [lo - padding, hi + padding];
}

/** The volume axis top: the largest bar, unless one spike would flatten the rest (then it is clipped). */
function volumeTop(bars) {
  const vols = bars.map((b) => b.volume || 0).sort((a, b) => a - b);
  if (!vols.length) return 1;
  const max = vols[vols.length - 1];
  const p90 = vols[Math.floor(0.9 * (vols.length - 1))];
  return Math.max(1, Math.min(max, 2.5 * p90));
}

function renderChart() {
  const gd = $("chart");
  if (!window.Plotly || !state.date) return;
  const date = state.date;
  const bars = visibleBars();
  const traces = [
    {
      type: "candlestick",
      name: "ES 2m",
      x: bars.map((b) => b.x),
      open: bars.map((b) => b.open),
      high: bars.map((b) => b.high),
      low: bars.map((b) => b.low),
      close: bars.map((b) => b.close),
      xperiod: BAR_MIN * 60 * 1000,
      xperiodalignment: "start", // drawn and labelled at the bar's open time: the unified hover header reads 10:52 over the 10:52 bar
      increasing: { line: { color: COLORS.up, width: 1 }, fillcolor: COLORS.up },
      decreasing: { line: { color: COLORS.down, width: 1 }, fillcolor: COLORS.down },
      whiskerwidth: 0,
      showlegend: false,
      hoverlabel: { namelength: 0 },
      yaxis: "y",
    },
    {
      type: "bar",
      name: "Volume",
      x: bars.map((b) => b.x),
      y: bars.map((b) => b.volume),
      xperiod: BAR_MIN * 60 * 1000,
      xperiodalignment: "start",
      marker: {
        color: bars.map((b) => (b.close >= b.open ? COLORS.up : COLORS.down)),
        opacity: 0.45,
        line: { width: 0 },
      },
      showlegend: false,
      hovertemplate: "vol %{y:,}<extra></extra>",
      yaxis: "y2",
    },
  ];
  const levelValues = [];
  const inZone = liveKinds();
  for (const kind of LEVELS) {
    const st = LEVEL_STYLE[kind];
    let pts = (state.levels[kind] || []).filter((p) => p.min <= state.now + 1e-6);
    if (kind.startsWith("PM_")) {
      // The pre-market high/low is known from 09:30 on: draw it across the pre-market it summarises.
      const first = pts.find((p) => p.value !== null && p.value !== undefined);
      if (first) {
        const from = { min: CHART_FROM_MIN, x: wallAt(date, CHART_FROM_MIN), value: first.value };
        pts = [from, ...pts.filter((p) => p.min >= first.min)];
      }
    }
    for (const p of pts) if (p.value !== null && p.value !== undefined) levelValues.push(p.value);
    traces.push({
      type: "scatter",
      mode: "lines",
      name: kind,
      meta: kind,
      x: pts.map((p) => p.x),
      y: pts.map((p) => (p.value === null || p.value === undefined ? null : p.value)),
      connectgaps: false,
      // Fixed levels step; the moving averages are drawn as lines. A level in its zone is drawn bolder.
      line: {
        color: st.color,
        dash: st.dash,
        width: st.width + (inZone.has(kind) ? 1.2 : 0),
        shape: kind.startsWith("SMA") || kind.startsWith("EMA") ? "linear" : "hv",
      },
      opacity: inZone.size && !inZone.has(kind) ? 0.7 : 1,
      hovertemplate: `${kind} %{y:.2f}<extra></extra>`,
      yaxis: "y",
    });
  }
  const maxVol = volumeTop(bars);
  const nowX = wallAt(date, state.now);
  const shapes = [
    {
      type: "line",
      xref: "x",
      yref: "paper",
      x0: nowX,
      x1: nowX,
      y0: 0,
      y1: 1,
      line: { color: COLORS.now, width: 1, dash: "dash" },
    },
    {
      // The hidden future, shaded.
      type: "rect",
      xref: "x",
      yref: "paper",
      x0: nowX,
      x1: wallAt(date, END_MIN + 3),
      y0: 0,
      y1: 1,
      fillcolor: "rgba(255,255,255,0.025)",
      line: { width: 0 },
      layer: "below",
    },
  ];
  const annotations = [
    {
      x: nowX,
      y: 1,
      xref: "x",
      yref: "paper",
      yanchor: "top",
      // Late in the window the label goes left of the line: on the right it would cover the price axis.
      xanchor: state.now > END_MIN - 40 ? "right" : "left",
      text: `now ${hhmm(state.now)}`,
      showarrow: false,
      font: { color: COLORS.bg, size: 11 },
      bgcolor: COLORS.now,
      borderpad: 2,
    },
  ];
  const last = bars[bars.length - 1];
  if (last) {
    shapes.push({
      type: "line",
      xref: "paper",
      yref: "y",
      x0: 0,
      x1: 1,
      y0: last.close,
      y1: last.close,
      line: { color: last.close >= last.open ? COLORS.up : COLORS.down, width: 1, dash: "dot" },
      opacity: 0.6,
    });
    annotations.push({
      x: 1,
      xref: "paper",
      xanchor: "left",
      y: last.close,
      yref: "y",
      text: last.close.toFixed(2),
      showarrow: false,
      font: { color: "#fff", size: 11 },
      bgcolor: last.close >= last.open ? COLORS.up : COLORS.down,
      borderpad: 2,
    });
  }
  const f = state.focus;
  if (f && f.date === date) {
    const fx = wallAt(date, f.min);
    shapes.push({
      type: "line",
      xref: "x",
      yref: "paper",
      x0: fx,
      x1: fx,
      y0: 0,
      y1: 1,
      line: { color: COLORS.focus, width: 1, dash: "dot" },
    });
    annotations.push({
      // At the foot of the price pane: the "now" label sits at the top, often at the same time.
      x: fx,
      y: 0.2,
      xref: "x",
      yref: "paper",
      yanchor: "bottom",
      xanchor: fx > nowX || f.min > END_MIN - 40 ? "right" : "left",
      text: `setup ${f.hms} ${f.kind}`,
      showarrow: false,
      font: { color: COLORS.focus, size: 10 },
    });
  }
  const axisFont = { color: COLORS.axis, size: 11 };
  const layout = {
    paper_bgcolor: COLORS.bg,
    plot_bgcolor: COLORS.bg,
    font: { color: COLORS.text, family: "ui-sans-serif, system-ui, -apple-system, Segoe UI, sans-serif" },
    margin: { l: 12, r: 64, t: 36, b: 36 },
    showlegend: true,
    legend: {
      orientation: "h",
      x: 0,
      y: 1.0,
      xanchor: "left",
      yanchor: "bottom",
      font: { size: 11, color: COLORS.text },
      bgcolor: "rgba(0,0,0,0)",
      itemclick: "toggle",
    },
    hovermode: "x unified",
    hoverlabel: { bgcolor: "#161b22", bordercolor: "#30363d", font: { color: COLORS.text, size: 11 } },
    dragmode: "pan",
    bargap: 0.15,
    xaxis: {
      type: "date",
      range: [wallAt(date, CHART_FROM_MIN), wallAt(date, END_MIN + 3)],
      rangeslider: { visible: false },
      tickformat: "%H:%M",
      hoverformat: "%H:%M",
      dtick: 30 * 60 * 1000,
      gridcolor: COLORS.grid,
      linecolor: "#30363d",
      tickfont: axisFont,
      showspikes: true,
      spikemode: "across",
      spikethickness: 1,
      spikecolor: "#484f58",
      spikedash: "solid",
      anchor: "y2",
      zeroline: false,
    },
    yaxis: {
      domain: [0.24, 1],
      side: "right",
      range: yRange(bars, levelValues),
      gridcolor: COLORS.grid,
      tickfont: axisFont,
      tickformat: ".2f",
      zeroline: false,
      fixedrange: false,
    },
    yaxis2: {
      domain: [0, 0.18],
      side: "right",
      title: { text: "contracts", font: { ...axisFont, size: 10 }, standoff: 4 },
      range: [0, maxVol * 1.15],
      gridcolor: COLORS.grid,
      tickfont: { ...axisFont, size: 10 },
      nticks: 3,
      tickformat: "~s",
      zeroline: false,
      fixedrange: true,
    },
    shapes,
    annotations,
    uirevision: date, // keeps a user's zoom while the replay moves; resets on another day
  };
  window.Plotly.react(gd, traces, layout, {
    responsive: true,
    displaylogo: false,
    scrollZoom: true,
    modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toImage"],
  });
}

function liveKinds() {
  const live = new Set();
  for (const [kind, s] of latestSignals()) if (state.now - s.min < BAR_MIN - 1e-6) live.add(kind);
  return live;
}

function latestSignals() {
  const byKind = new Map();
  for (const s of state.signals) {
    if (s.min > state.now + 1e-6) break;
    byKind.set(s.level_kind, s);
  }
  return byKind;
}

function levelValueAt(kind, min) {
  let v = null;
  for (const p of state.levels[kind] || []) {
    if (p.min > min + 1e-6) break;
    if (p.value !== null && p.value !== undefined) v = p.value;
    else v = null;
  }
  return v;
}

const pct = (x) => (x === null || x === undefined || !Number.isFinite(Number(x)) ? "—" : `${Math.round(Number(x) * 100)}`);
const fmt = (x, d = 2) => (x === null || x === undefined || !Number.isFinite(Number(x)) ? "—" : Number(x).toFixed(d));

function renderPanels() {
  const box = $("panels");
  if (!state.date) {
    box.replaceChildren();
    return;
  }
  const latest = latestSignals();
  const live = [];
  const quiet = [];
  for (const kind of LEVELS) {
    const s = latest.get(kind);
    if (s && state.now - s.min < BAR_MIN - 1e-6) live.push(s);
    else quiet.push({ kind, last: s || null });
  }
  const nodes = live.map(levelPanel);
  if (!live.length) {
    nodes.push(
      el(
        "div",
        { class: "none-in-zone" },
        state.signals.length
          ? `No level in its zone at ${hhmm(state.now)} ET.`
          : `No signals for ${state.date} (not indexed, or no level came into its zone).`,
      ),
    );
  }
  nodes.push(
    el(
      "div",
      { class: "quiet" },
      quiet.map(({ kind, last }) => {
        const v = levelValueAt(kind, state.now);
        return el(
          "div",
          { class: "quiet-row", dataset: { kind } },
          el("span", { class: "swatch", style: `--c:${LEVEL_STYLE[kind].color}` }),
          el("span", { class: "q-name" }, kind),
          el("span", { class: "q-val num" }, v === null ? "not active" : fmt(v)),
          el("span", { class: "q-state" }, last ? `out of zone · last ${hhmm(last.min)}` : "not in zone"),
        );
      }),
    ),
  );
  box.replaceChildren(...nodes);
}

function baseKey(s) {
  return `${state.date}|${s.level_kind}|${s.direction}|${bucketOf(s.min)}`;
}

function baseRateFor(s) {
  if (s.base_rate && typeof s.base_rate === "object") return { rate: s.base_rate, n: s.base_n ?? null };
  const hit = state.baseRates.get(baseKey(s));
  if (hit && typeof hit === "object") return hit;
  if (hit === "none") return { rate: null, n: null };
  if (hit === undefined) fetchBaseRate(s);
  return null;
}

/** The partition's base rate as of this day when a signal does not carry it (an older API): one /v1/similar per
 * (day, level, direction, time bucket), cached. */
async function fetchBaseRate(s) {
  const key = baseKey(s);
  state.baseRates.set(key, "pending");
  try {
    const ans = await api("v1/similar", {
      method: "POST",
      body: { date: state.date, time: s.hms.slice(0, 5), level_kind: s.level_kind, k: SIMILAR_K },
    });
    const dist = (ans && ans.distribution) || {};
    const br = dist.base_rate;
    state.baseRates.set(key, br && typeof br === "object" ? { rate: br, n: dist.base_n ?? null } : "none");
  } catch {
    state.baseRates.set(key, "none");
  }
  if (key.startsWith(`${state.date}|`)) renderPanels();
}

function levelPanel(s) {
  const kind = s.level_kind;
  const st = LEVEL_STYLE[kind];
  const up = s.direction === "UP";
  const dist = Number(s.distance);
  const value = levelValueAt(kind, s.min);
  const base = baseRateFor(s);
  const selected = state.selection && state.selection.kind === kind && state.selection.min === s.min;
  const rows = OUTCOMES.map((o) => probRow(s, o, base, selected && state.selection.outcome === o));
  const smooth = s.smoothed
    ? OUTCOMES.map((o) => `${o[0]}${o.slice(1).toLowerCase()} ${pct(s.smoothed[o])} %`).join(" · ")
    : null;
  return el(
    "section",
    { class: `level ${up ? "from-below" : "from-above"}`, dataset: { kind } },
    el(
      "header",
      { class: "level-head" },
      el("span", { class: "swatch", style: `--c:${st.color}` }),
      el("span", { class: "level-name" }, kind),
      el("span", { class: "level-val num" }, value === null ? "" : fmt(value)),
      el(
        "span",
        { class: `dir ${up ? "up" : "down"}`, title: up ? "price below the level, approaching from below" : "price above the level, approaching from above" },
        up ? "▲ from below" : "▼ from above",
      ),
      el(
        "span",
        { class: "dist num", title: "distance = (price − level) / ATR: negative below the level, positive above" },
        Number.isFinite(dist) ? `${dist < 0 ? "−" : "+"}${Math.abs(dist).toFixed(2)} ATR` : "",
      ),
    ),
    el("div", { class: "prows" }, rows),
    el(
      "footer",
      { class: "level-foot" },
      el("span", { class: "num" }, `n ${s.n ?? "—"}`),
      el(
        "span",
        { class: "tip num", tabindex: "0", "data-tip": N_EFF_TIP, "aria-label": N_EFF_TIP },
        `n_eff ${fmt(s.n_eff, 1)}`, el("span", { class: "i" }, "i"),
      ),
      thinNote(s),
      base && base.n !== null
        ? el("span", { class: "muted num", title: "earlier setups behind the base rate" }, `base n ${base.n}`)
        : null,
      smooth ? el("span", { class: "muted num", title: "BREAK / REJECT / CHOP %, smoothed across consecutive bars" }, `smoothed over bars: ${smooth}`) : null,
    ),
  );
}

/** Honest labelling: say when the numbers rest on few or no earlier setups. */
function thinNote(s) {
  const n = Number(s.n);
  const neff = Number(s.n_eff);
  if (n === 0)
    return el(
      "span",
      { class: "thin tip", tabindex: "0", "data-tip": "No earlier setup of this level, direction and time of day: the numbers are the prior alone." },
      "prior only",
    );
  if (Number.isFinite(neff) && Math.round(neff * 10) / 10 < 3)
    return el(
      "span",
      { class: "thin tip", tabindex: "0", "data-tip": "Fewer than 3 effective setups: the estimate leans on the base rate; read the interval, not the point." },
      "thin",
    );
  return null;
}

function probRow(s, outcome, base, selected) {
  const p = Number(s.p && s.p[outcome]);
  const iv = (s.interval && s.interval[outcome]) || [];
  const lo = Number(iv[0]);
  const hi = Number(iv[1]);
  // No earlier setups behind it: the "base rate" would only be the prior, so none is shown.
  const b = base && base.rate && base.n !== 0 ? Number(base.rate[outcome]) : NaN;
  const w = (x) => `${Math.max(0, Math.min(100, x * 100)).toFixed(1)}%`;
  const track = el(
    "span",
    { class: "track" },
    el("span", { class: "fill", style: `width:${Number.isFinite(p) ? w(p) : "0%"}` }),
    Number.isFinite(lo) && Number.isFinite(hi)
      ? el("span", { class: "whisker", style: `left:${w(lo)};width:calc(${w(hi)} - ${w(lo)})` })
      : null,
    Number.isFinite(b) ? el("span", { class: "base", style: `left:${w(b)}`, title: `base rate ${pct(b)} %` }) : null,
  );
  const label = `P(${outcome}) ${pct(p)} %, 80 % interval ${pct(lo)}–${pct(hi)} %` + (Number.isFinite(b) ? `, base rate ${pct(b)} %` : "");
  return el(
    "button",
    {
      type: "button",
      class: `prow o-${outcome.toLowerCase()}${selected ? " selected" : ""}`,
      dataset: { outcome, kind: s.level_kind },
      title: `${outcome}: ${OUTCOME_TEXT[outcome]}. Click for the nearest historical setups.`,
      "aria-label": label,
      onclick: () => openSimilar(s, outcome),
    },
    el("span", { class: "o-name" }, outcome),
    track,
    el("span", { class: "p-num num" }, `${pct(p)}%`),
    el("span", { class: "ci num", title: "80 % interval" }, Number.isFinite(lo) ? `${pct(lo)}–${pct(hi)}` : ""),
    el(
      "span",
      { class: "br num tip", "data-tip": BASE_TIP },
      Number.isFinite(b) ? `base ${pct(b)}%` : base ? "base —" : "base …",
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Nearest historical setups

async function openSimilar(s, outcome) {
  const token = ++state.similarToken;
  state.selection = { kind: s.level_kind, min: s.min, outcome };
  renderPanels();
  const card = $("similar-card");
  card.hidden = false;
  const time = s.hms.slice(0, 5);
  $("similar-title").textContent = `· ${s.level_kind} ${s.direction === "UP" ? "▲" : "▼"} at ${time} ET`;
  $("similar-summary").replaceChildren(el("span", { class: "muted" }, "Searching …"));
  $("similar-count").textContent = "";
  $("similar").replaceChildren();
  let ans;
  try {
    ans = await api("v1/similar", {
      method: "POST",
      body: { date: state.date, time, level_kind: s.level_kind, k: SIMILAR_K },
    });
  } catch (err) {
    if (token !== state.similarToken) return;
    $("similar-summary").replaceChildren(el("span", { class: "err" }, explain(err)));
    return;
  }
  if (token !== state.similarToken) return;
  const dist = ans.distribution || {};
  if (dist.base_rate && typeof dist.base_rate === "object") {
    state.baseRates.set(baseKey(s), { rate: dist.base_rate, n: dist.base_n ?? null });
    renderPanels();
  }
  const summary = OUTCOMES.map((o) =>
    el(
      "span",
      { class: `sum-o o-${o.toLowerCase()}${o === outcome ? " picked" : ""}`, title: `${o}: ${OUTCOME_TEXT[o]}` },
      `${o} ${pct(dist.p && dist.p[o])}%`,
      el("small", {}, ` base ${pct(dist.base_rate && dist.base_rate[o])}`),
    ),
  );
  $("similar-summary").replaceChildren(
    el("div", { class: "sum-line" }, summary, thinNote(dist)),
    el(
      "div",
      { class: "sum-line muted num" },
      el(
        "span",
        {},
        `n ${dist.n ?? "—"} · `,
        el("span", { class: "tip", tabindex: "0", "data-tip": N_EFF_TIP }, `n_eff ${fmt(dist.n_eff, 1)}`, el("span", { class: "i" }, "i")),
      ),
      el(
        "span",
        { title: "similarity-weighted expected max favourable / adverse excursion, in ATR" },
        `E[MFE] ${fmt(dist.expected_mfe)} · E[MAE] ${fmt(dist.expected_mae)} ATR`,
      ),
      el("span", {}, `${dist.horizon ?? HORIZON}-min horizon · days before ${state.date}`),
    ),
    setupLine(ans.setup),
  );
  // Setups carrying no weight (dissimilar, or beyond the per-day cap) say nothing about the estimate.
  const carried = (ans.neighbours || []).filter((nb) => Number(nb.weight) > 0 && Number(nb.similarity) > 0);
  const totalWeight = carried.reduce((acc, nb) => acc + Number(nb.weight), 0);
  const rows = carried.map((nb) => {
    const o = String(nb.outcome || "—");
    return el(
      "tr",
      {
        class: "nb",
        tabindex: "0",
        role: "link",
        title: `Open ${nb.date} at ${String(nb.time).slice(0, 5)} ET`,
        dataset: { date: nb.date, time: nb.time, kind: nb.level_kind || "" },
        onclick: () => openNeighbour(nb),
        onkeydown: (e) => {
          if (e.key === "Enter" || e.key === " ") {
            e.preventDefault();
            openNeighbour(nb);
          }
        },
      },
      el("td", { class: "num" }, nb.date),
      el("td", { class: "num" }, String(nb.time || "").slice(0, 8)),
      el("td", {}, el("span", { class: `outcome o-${o.toLowerCase()}` }, o)),
      el("td", { class: "num" }, `${nb.level_kind || ""} ${nb.direction === "UP" ? "▲" : nb.direction === "DOWN" ? "▼" : ""}`),
      el("td", { class: "num right" }, fmt(nb.similarity, 3)),
      el("td", { class: "num right weight" }, `${fmt((100 * Number(nb.weight)) / totalWeight, 1)}%`),
      el("td", { class: "num right muted" }, `${fmt(nb.mfe, 1)} / ${fmt(nb.mae, 1)}`),
    );
  });
  $("similar").replaceChildren(
    rows.length
      ? el(
          "table",
          { class: "nb-table" },
          el(
            "thead",
            {},
            el(
              "tr",
              {},
              el("th", {}, "date"),
              el("th", {}, "time ET"),
              el("th", {}, "outcome"),
              el("th", {}, "level"),
              el("th", { class: "right" }, "sim"),
              el("th", { class: "right", title: "this setup's share of the estimate: its kernel weight over the listed setups' total" }, "weight"),
              el("th", { class: "right", title: "max favourable / adverse excursion, ATR" }, "mfe / mae"),
            ),
          ),
          el("tbody", {}, rows),
        )
      : el("div", { class: "muted" }, "No earlier setups in this partition carry weight."),
  );
  $("similar-count").textContent = rows.length
    ? `${rows.length} nearest setup${rows.length === 1 ? "" : "s"} with weight (of ${SIMILAR_K} asked)`
    : "";
}

/** The learned similarity's answer (``setup``) with the evidence of its model at this level kind. */
function setupLine(setup) {
  if (!setup) {
    return el("div", { id: "setup-line", class: "sum-line muted" }, "Learned similarity: no model fitted yet (spymaster fit).");
  }
  const ev = setup.evidence || {};
  const iv = setup.interval || [];
  const m = setup.model || {};
  return el(
    "div",
    { id: "setup-line", class: "sum-line setup-line num" },
    el("b", {}, `Learned: BREAK ${pct(setup.p_break)}%`),
    el("span", { class: "muted" }, ` (80 %: ${pct(iv[0])}–${pct(iv[1])}%) from ${setup.n} earlier approaches, ${setup.breaks} broke · `),
    el(
      "span",
      { class: ev.verdict === "no measured edge" ? "err" : "", title: "out-of-sample, days before this model's fit" },
      `${ev.level_kind || ""}: ${ev.verdict || "—"}`,
    ),
    el("span", { class: "muted" }, ` · model ${m.version || "—"} through ${m.fitted_through || "—"}`),
  );
}

function openNeighbour(nb) {
  const min = parseTime(String(nb.time));
  if (min === null || !nb.date) return;
  state.focus = { date: nb.date, min, hms: String(nb.time).slice(0, 8), kind: nb.level_kind || "" };
  for (const tr of document.querySelectorAll("#similar tr.nb")) tr.classList.remove("visited-now");
  const row = [...document.querySelectorAll("#similar tr.nb")].find(
    (tr) => tr.dataset.date === nb.date && tr.dataset.time === String(nb.time),
  );
  if (row) row.classList.add("visited-now", "visited");
  if (!state.days.some((d) => d.date === nb.date)) {
    showBanner(`${nb.date} is not in the lake.`);
    return;
  }
  openDay(nb.date, min, { push: true });
}

// ---------------------------------------------------------------------------------------------
// The evaluation report: GET v1/report (metrics + markdown) and v1/report/files/{name} (plots).

const REPORT_PLOTS = [
  ["reliability", "Reliability: forecast P(BREAK) against the realised rate"],
  ["lift", "BREAK rate by forecast decile"],
  ["coverage", "Planted probability against the served 80 % interval"],
];
const SERVED_ESTIMATOR = "kNN served";

function reportFileUrl(name) {
  return `v1/report/files/${encodeURIComponent(name)}`;
}

/** An <img> of a report file: a plain same-origin URL, or (with an API key) fetched with the key. */
function reportImage(name, alt) {
  const img = el("img", { alt, loading: "lazy", dataset: { file: name } });
  if (!state.key) {
    img.src = reportFileUrl(name);
    return img;
  }
  fetch(reportFileUrl(name), { headers: { "X-API-Key": state.key }, credentials: "same-origin" })
    .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(`${r.status}`))))
    .then((blob) => {
      img.src = URL.createObjectURL(blob);
    })
    .catch(() => img.replaceWith(el("span", { class: "muted" }, `${name} unavailable`)));
  return img;
}

/** Inline markdown: **bold**, `code` and *emphasis*, as DOM nodes (text is never parsed as HTML). */
function mdInline(text) {
  const out = [];
  const re = /\*\*([^*]+)\*\*|`([^`]+)`|\*([^*\s][^*]*)\*/g;
  let last = 0;
  let m;
  while ((m = re.exec(text))) {
    if (m.index > last) out.push(text.slice(last, m.index));
    if (m[1] !== undefined) out.push(el("strong", {}, m[1]));
    else if (m[2] !== undefined) out.push(el("code", {}, m[2]));
    else out.push(el("em", {}, m[3]));
    last = re.lastIndex;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

const mdCells = (line) => line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());

/**
 * The report's markdown rendered: headings, paragraphs, bullet lists, pipe tables and its images
 * (the report's own plot files, e.g. ![lift.png](lift.png), served from v1/report/files).
 */
function renderMarkdown(md) {
  const lines = String(md || "").split("\n");
  const nodes = [];
  let para = [];
  let list = null;
  const flush = () => {
    if (para.length) nodes.push(el("p", {}, mdInline(para.join(" "))));
    para = [];
    list = null;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const head = /^(#{1,4})\s+(.*)$/.exec(line);
    const img = /^!\[([^\]]*)\]\(([^)\s]+)\)\s*$/.exec(line.trim());
    const item = /^\s*[*-]\s+(.*)$/.exec(line);
    if (!line.trim()) {
      flush();
    } else if (head) {
      flush();
      nodes.push(el(`h${Math.min(6, head[1].length + 2)}`, { class: "md-h" }, mdInline(head[2])));
    } else if (img) {
      flush();
      const file = img[2].split("/").pop();
      const plot = file.replace(/\.[a-z]+$/i, "");
      const caption = (REPORT_PLOTS.find(([k]) => k === plot) || [plot, img[1]])[1];
      nodes.push(el("figure", { class: "report-plot", dataset: { plot } }, reportImage(file, caption), el("figcaption", {}, caption)));
    } else if (line.trim().startsWith("|") && i + 1 < lines.length && /^\s*\|[\s:|-]+\|\s*$/.test(lines[i + 1])) {
      flush();
      const header = mdCells(line);
      const rows = [];
      i += 2;
      while (i < lines.length && lines[i].trim().startsWith("|")) rows.push(mdCells(lines[i++]));
      i--;
      nodes.push(
        el(
          "table",
          { class: "md-table num" },
          el("thead", {}, el("tr", {}, header.map((h) => el("th", {}, mdInline(h))))),
          el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, mdInline(c)))))),
        ),
      );
    } else if (item) {
      if (para.length) flush();
      if (!list) {
        list = el("ul", {});
        nodes.push(list);
      }
      list.append(el("li", {}, mdInline(item[1])));
    } else {
      list = null;
      para.push(line.trim());
    }
  }
  flush();
  return nodes;
}

function goalValue(g) {
  const v = Number(g.value);
  if (g.value === null || g.value === undefined || !Number.isFinite(v)) return "—";
  return String(g.target || "").includes("%") ? `${(v * 100).toFixed(1)} %` : v.toFixed(3);
}

function reportSummary(metrics) {
  const nodes = [];
  const served = metrics && metrics.scores && metrics.scores.all && metrics.scores.all[SERVED_ESTIMATOR];
  if (served) {
    nodes.push(
      el(
        "p",
        { class: "report-scores num" },
        `${SERVED_ESTIMATOR} on ${Number(served.n).toLocaleString("en-US")} test episodes: ` +
          `Brier ${fmt(served.brier, 4)} · log loss ${fmt(served.log_loss, 4)} · ECE ${fmt(served.ece, 3)} · ` +
          `AUC ${fmt(served.auc, 3)} · top-decile lift ${fmt(served.lift, 2)}`,
      ),
    );
  }
  const goals = (metrics && Array.isArray(metrics.goals) && metrics.goals) || [];
  if (goals.length) {
    nodes.push(
      el(
        "table",
        { class: "report-goals" },
        el("thead", {}, el("tr", {}, el("th", {}, "goal"), el("th", {}, "target"), el("th", { class: "right" }, "value"), el("th", {}, ""))),
        el(
          "tbody",
          {},
          goals.map((g) =>
            el(
              "tr",
              {},
              el("td", {}, String(g.goal || "")),
              el("td", { class: "num" }, String(g.target || "")),
              el("td", { class: "num right" }, goalValue(g)),
              el(
                "td",
                { class: g.met === true ? "met" : g.met === false ? "unmet" : "muted" },
                g.met === true ? "met" : g.met === false ? "not met" : "n/a",
              ),
            ),
          ),
        ),
      ),
    );
  }
  return nodes;
}

async function openReport() {
  const panel = $("report-panel");
  panel.hidden = false;
  $("report-close").focus();
  const body = $("report-body");
  if (state.report) return; // loaded once per page view
  $("report-meta").textContent = "";
  body.replaceChildren(el("p", { class: "muted" }, "Loading the latest evaluation …"));
  let rep;
  try {
    rep = await api("v1/report");
  } catch (err) {
    const text =
      err instanceof ApiError && err.status === 404
        ? `No evaluation report: ${err.message}`
        : explain(err);
    body.replaceChildren(el("p", { class: "report-none" }, text));
    return;
  }
  state.report = rep;
  const span = [rep.start, rep.end].map((d) => d || "…").join(" → ");
  $("report-meta").textContent = `· run ${rep.run_id} · test days ${span}${rep.created_at ? ` · ${rep.created_at}` : ""}`;
  const files = (rep.files || []).map((f) =>
    el("a", { href: state.key ? null : reportFileUrl(f.name), class: "report-file", target: "_blank", rel: "noopener" }, f.name),
  );
  body.replaceChildren(
    ...reportSummary(rep.metrics || {}),
    el("div", { id: "report-md", class: "report-md" }, renderMarkdown(rep.markdown)),
    files.length ? el("p", { class: "report-files muted" }, "Files: ", files) : null,
  );
}

function closeReport() {
  const panel = $("report-panel");
  if (panel.hidden) return;
  panel.hidden = true;
  $("btn-report").focus();
}

// ---------------------------------------------------------------------------------------------
// Wiring

function wire() {
  $("date-select").addEventListener("change", (e) => {
    state.focus = null;
    if (state.live) stopLive({ reopen: false });
    openDay(e.target.value, state.now, { push: true });
  });
  $("btn-live").addEventListener("click", () => (state.live ? stopLive() : startLive()));
  $("btn-start").addEventListener("click", () => {
    stop();
    setNow(START_MIN);
  });
  $("btn-back").addEventListener("click", () => {
    stop();
    step(-1);
  });
  $("btn-fwd").addEventListener("click", () => {
    stop();
    step(1);
  });
  $("btn-end").addEventListener("click", () => {
    stop();
    setNow(END_MIN);
  });
  $("btn-play").addEventListener("click", () => (state.playing ? stop() : play()));
  $("speed").addEventListener("change", () => {
    if (state.playing) {
      stop();
      play();
    }
  });
  const slider = $("time-slider");
  slider.addEventListener("input", () => {
    stop();
    setNow(Number(slider.value));
  });
  $("btn-report").addEventListener("click", () => openReport());
  $("report-close").addEventListener("click", () => closeReport());
  $("report-panel").addEventListener("click", (e) => {
    if (e.target === e.currentTarget) closeReport(); // a click on the backdrop
  });
  document.addEventListener("keydown", (e) => {
    if (!$("report-panel").hidden) {
      if (e.key === "Escape") closeReport();
      return; // the replay keys wait while the report is open
    }
    const t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
    if (e.key === "ArrowRight") {
      stop();
      step(1);
    } else if (e.key === "ArrowLeft") {
      stop();
      step(-1);
    } else if (e.key === " " && t && t.tagName !== "BUTTON" && t.tagName !== "TR") {
      e.preventDefault();
      state.playing ? stop() : play();
    } else if (e.key === "Home") {
      stop();
      setNow(START_MIN);
    } else if (e.key === "End") {
      stop();
      setNow(END_MIN);
    } else return;
  });
  window.addEventListener("popstate", () => {
    const p = new URLSearchParams(window.location.search);
    const date = p.get("date") || state.date;
    const min = parseTime(p.get("t"));
    if (date) openDay(date, min === null ? END_MIN : min);
  });
}

/** Why the URL's date is not shown, and what is shown instead. */
function notInLake(wanted, shown) {
  const d = /^\d{4}-\d{2}-\d{2}$/.test(wanted) ? new Date(`${wanted}T12:00:00Z`) : null;
  if (!d || Number.isNaN(d.getTime()) || d.toISOString().slice(0, 10) !== wanted)
    return `"${wanted}" in the URL is not a date (YYYY-MM-DD): showing ${shown} instead.`;
  const wd = d.getUTCDay();
  if (wd === 0 || wd === 6)
    return `${wanted} is a ${wd === 0 ? "Sunday" : "Saturday"}, not a trading day: showing ${shown} instead.`;
  return `${wanted} is not in the lake (a holiday, or not generated / downloaded yet): showing ${shown} instead.`;
}

// ---------------------------------------------------------------------------------------------
// Streams panel (issue 15): the selected level's streams up to the replay time, their 20-minute
// q10–q90 projections and the level's alerts, from GET /v1/days/{date}/streams (as of a bar: the
// API sends nothing after it). Self-contained: its own state, one hook in render() and main().

const STREAMS_SHOWN = ["pressure", "structure", "net", "dealer"];
const STREAMS_BAND = "net";
const STREAM_COLORS = { pressure: "#58a6ff", structure: "#d29922", net: "#3fb950", dealer: "#bc8cff" };
const streams = { level: params.get("level") || null, position: "", key: null, data: null, token: 0 };

function wireStreams() {
  const sel = $("streams-level");
  sel.replaceChildren(...LEVELS.map((k) => el("option", { value: k }, k)));
  if (streams.level && LEVELS.includes(streams.level)) sel.value = streams.level;
  sel.addEventListener("change", (e) => {
    streams.level = e.target.value;
    renderStreams();
  });
  $("streams-position").addEventListener("change", (e) => {
    streams.position = e.target.value;
    renderStreams();
  });
}

/** The retrieval answer's P(BREAK) / P(REJECT) for the level at the replay bar, when it is in its zone. */
function streamsProbs(level) {
  const s = latestSignals().get(level);
  if (!s || state.now - s.min >= BAR_MIN - 1e-6 || !s.p) return "";
  return `&p_break=${s.p.BREAK}&p_reject=${s.p.REJECT}`;
}

/** The level the panel follows: the one picked, else the first in its zone now, else the first. */
function streamsLevel() {
  if (streams.level) return streams.level;
  const latest = latestSignals();
  const inZone = LEVELS.find((k) => {
    const s = latest.get(k);
    return s && state.now - s.min < BAR_MIN - 1e-6;
  });
  return inZone || LEVELS[0];
}

async function renderStreams() {
  if (state.live) return renderLiveStreams();
  if (!state.date) return;
  const level = streamsLevel();
  $("streams-level").value = level;
  const at = hhmm(Math.max(START_MIN, state.now));
  const pos = streams.position ? `&position=${streams.position}${streamsProbs(level)}` : "";
  const key = `${state.date}|${level}|${at}|${pos}`;
  if (key === streams.key) return;
  streams.key = key;
  const token = ++streams.token;
  const card = $("streams-card");
  try {
    const q = `v1/days/${encodeURIComponent(state.date)}/streams?level=${level}&at=${at}${pos}`;
    const data = await api(q);
    if (token !== streams.token) return; // the replay moved on meanwhile
    streams.data = data;
    card.dataset.asOf = data.as_of_time;
    card.dataset.level = level;
    drawStreams(data);
  } catch (err) {
    if (token !== streams.token) return;
    streams.data = null;
    card.dataset.asOf = "";
    card.dataset.level = level;
    $("streams-meta").textContent = explain(err);
    $("streams-exit").textContent = "";
    $("streams-latest").replaceChildren();
    $("streams-alerts").replaceChildren();
    if (window.Plotly) window.Plotly.purge($("streams-chart"));
  }
}

/** Live mode: the level's streams as the engine pushed them at the last bar close (no fetch). */
function renderLiveStreams() {
  const level = streamsLevel();
  $("streams-level").value = level;
  const data = state.live.streams[level] || null;
  const key = `live|${state.live.date}|${level}|${data ? data.as_of : ""}`;
  if (key === streams.key) return;
  streams.key = key;
  streams.token++; // a fetch still in flight from replay mode must not draw over this
  const card = $("streams-card");
  card.dataset.level = level;
  card.dataset.asOf = data ? data.as_of_time : "";
  streams.data = data;
  if (data) {
    drawStreams(data);
    $("streams-exit").textContent = streams.position ? "exit score: replay mode only" : "";
    return;
  }
  $("streams-meta").textContent = `${level}: waiting for the engine's first 2-minute bar close with the level active`;
  $("streams-exit").textContent = "";
  $("streams-latest").replaceChildren();
  $("streams-alerts").replaceChildren();
  if (window.Plotly) window.Plotly.purge($("streams-chart"));
}

function drawStreams(d) {
  const scaling = d.scaling_days ? `scaled on ${d.scaling_days} earlier day(s)` : "no earlier days: unscaled";
  const proj = d.projection ? `projection model ${d.projection.model_version}` : "no projection model yet";
  $("streams-meta").textContent = `as of ${d.as_of_time.slice(0, 5)} ET · ${d.direction === "UP" ? "▲ from below" : "▼ from above"} · ${scaling} · ${proj}`;
  const ex = d.exit;
  $("streams-exit").textContent = ex ? `exit ${ex.score === null ? "—" : fmt(ex.score)}` : "";
  const xs = d.bars.map((b) => toET(b.t).wall);
  const traces = STREAMS_SHOWN.map((name) => ({
    type: "scatter",
    mode: "lines",
    name,
    x: xs,
    y: d.bars.map((b) => b.values[name]),
    line: { color: STREAM_COLORS[name], width: name === STREAMS_BAND ? 2 : 1.2 },
    hovertemplate: `${name} %{y:.2f}<extra></extra>`,
  }));
  const curve = d.projection && d.projection.curves[STREAMS_BAND];
  if (curve) {
    const px = d.projection.t.map((t) => toET(t).wall);
    traces.push(
      { type: "scatter", mode: "lines", name: `${STREAMS_BAND} q90`, x: px, y: curve.q90, line: { width: 0 }, showlegend: false, hoverinfo: "skip" },
      {
        type: "scatter",
        mode: "lines",
        name: `${STREAMS_BAND} q10–q90`,
        x: px,
        y: curve.q10,
        fill: "tonexty",
        fillcolor: "rgba(63,185,80,0.18)",
        line: { width: 0 },
        hoverinfo: "skip",
      },
      { type: "scatter", mode: "lines", name: `${STREAMS_BAND} q50`, x: px, y: curve.q50, line: { color: STREAM_COLORS.net, dash: "dot", width: 1.5 } },
    );
  }
  const layout = {
    margin: { l: 30, r: 8, t: 4, b: 22 },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    font: { color: "#c9d1d9", size: 10 },
    showlegend: true,
    legend: { orientation: "h", x: 0, y: 1.12, font: { size: 10 } },
    xaxis: { type: "date", tickformat: "%H:%M", gridcolor: "#21262d" },
    yaxis: { range: [-1.05, 1.05], gridcolor: "#21262d", zeroline: true, zerolinecolor: "#484f58", dtick: 0.5 },
  };
  if (window.Plotly) window.Plotly.react($("streams-chart"), traces, layout, { displaylogo: false, displayModeBar: false, responsive: true });
  const row = (name, v) =>
    el("tr", { dataset: { stream: name } }, el("td", {}, name), el("td", { class: "num" }, fmt(v.value)), el("td", { class: "num" }, fmt(v.slope)), el("td", { class: "num" }, fmt(v.curv)));
  $("streams-latest").replaceChildren(
    el("tr", {}, el("th", {}, "stream"), el("th", {}, "value"), el("th", {}, "slope"), el("th", {}, "curv")),
    ...d.streams.map((s) => row(s.name, d.latest[s.name])),
  );
  const alerts = d.alerts.slice().reverse();
  $("streams-alerts").replaceChildren(
    ...(alerts.length
      ? alerts.map((a) =>
          el(
            "li",
            { class: `sev-${a.severity}${a.active ? " active" : ""}`, dataset: { alert: a.alert } },
            `${a.time.slice(0, 5)} ${a.alert}${a.expects ? ` → ${a.expects}` : ""} · ${a.severity} · ${Math.round(a.confidence * 100)} %${a.active ? " · active" : ` · cleared ${a.cleared.slice(0, 5)}`}`,
          ),
        )
      : [el("li", {}, "No alerts so far.")]),
  );
}

async function main() {
  wire();
  wireStreams(); // issue 15
  if (!window.Plotly) {
    showBanner("The chart library did not load (static/vendor/plotly.min.js).");
  }
  loadHealth();
  try {
    await loadDays();
  } catch (err) {
    showBanner(explain(err));
    setEmpty("No days to show.");
    return;
  }
  if (!state.days.length) {
    setEmpty("No days in the lake yet — generate some and run the pipeline.");
    return;
  }
  const wanted = params.get("date");
  const latestIndexed = state.days.find((d) => d.indexed) || state.days[0];
  let date = latestIndexed.date;
  let notice = null;
  if (wanted) {
    if (state.days.some((d) => d.date === wanted)) date = wanted;
    else notice = notInLake(wanted, date);
  }
  const t = parseTime(params.get("t"));
  await openDay(date, t === null ? END_MIN : t);
  if (notice) showBanner(notice); // after openDay, which clears the banner once the day loads
  document.body.dataset.ready = "1";
}

main();
