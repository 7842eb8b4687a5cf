"""The state-table feature registry: every feature's name, group and one-line definition.

Conventions: ``distance = (price − level) / ATR`` (positive above the level); ``direction`` is UP
when price is below the level (approaching from below) and DOWN when above. Features marked
*signed into the level* are multiplied by +1 for UP and −1 for DOWN, so positive always means
"pushing toward / through the level". ATR is Wilder-14 of 2-minute bars, as of the step.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

GROUPS: tuple[str, ...] = ("geometry", "kinematics", "flow", "barrier", "book", "tape", "dealer", "context")


@dataclass(frozen=True)
class Feature:
    name: str
    group: str
    definition: str


def _f(group: str, name: str, definition: str) -> Feature:
    assert group in GROUPS, group
    return Feature(name, group, definition)


_KIN = [
    _f(
        "kinematics",
        f"kin_{kind}_{m}m",
        {
            "vel": f"velocity of price relative to the level over {m} min, ATR/min, signed into the level",
            "acc": f"change of the {m}-min velocity over {m} min, ATR/min², signed into the level",
            "jerk": f"change of the {m}-min acceleration over {m} min, ATR/min³, signed into the level",
        }[kind],
    )
    for m in (1, 2, 5, 10, 20)
    for kind in ("vel", "acc", "jerk")
]

FEATURES: tuple[Feature, ...] = (
    _f(
        "geometry",
        "distance",
        "(price − level) / ATR; price is the last front-month trade at or before the step",
    ),
    _f("geometry", "abs_distance", "|distance|"),
    _f("geometry", "in_zone", "1 if |distance| ≤ 2 ATR (the approach zone), else 0"),
    _f(
        "geometry",
        "touches",
        "30-s bars so far today (closed by the step) whose high–low range held the level",
    ),
    _f("geometry", "confluence_n", "other active levels within 1 ATR of this level"),
    _f("geometry", "nearest_other_atr", "(nearest other active level − this level) / ATR"),
    _f("geometry", "or_width_atr", "(OR_HIGH − OR_LOW) / ATR; NaN before 09:45"),
    _f("geometry", "gap_atr", "(first RTH trade price − first Globex-session trade price) / ATR"),
    *_KIN,
    *[
        _f(
            "flow",
            f"flow_ofi_{w}s",
            f"best-level Cont–Kukanov–Stoikov OFI over the last {w} s / mean best-level depth, signed into the level",
        )
        for w in (30, 60, 120, 300)
    ],
    *[
        _f(
            "flow",
            f"flow_mlofi_{w}s",
            f"10-level OFI summed over levels over the last {w} s / mean depth per level, signed into the level",
        )
        for w in (30, 60, 120, 300)
    ],
    _f(
        "barrier",
        "barrier_depth",
        "resting size within ±4 ticks of the level on the side to consume (ask if UP, bid if DOWN)",
    ),
    _f("barrier", "barrier_log", "log(1 + barrier_depth)"),
    _f(
        "barrier",
        "barrier_change_60s",
        "barrier_log now − barrier_log 60 s ago (replenishment > 0, depletion < 0)",
    ),
    _f("barrier", "barrier_change_120s", "barrier_log now − barrier_log 120 s ago"),
    _f(
        "barrier",
        "barrier_tick_prominence",
        "log(size at the level's own tick on the side to consume: the level rounded up on the ask if UP,"
        " down on the bid if DOWN) − log(median level size of that side); null when that tick is not visible",
    ),
    *(
        _f(
            "book",
            f"book_imb_{n}{sfx}",
            f"{what} of the depth imbalance (Σ bid − Σ ask)/(Σ bid + Σ ask) of resting size over the top "
            f"{n} level(s), signed into the level",
        )
        for n in (1, 5, 10)
        for sfx, what in (
            ("", "last book state"),
            ("_30s", "time-weighted mean over the last 30 s"),
            ("_60s", "time-weighted mean over the last 60 s"),
            ("_chg_60s", "change over the last 60 s (now − 60 s ago)"),
        )
    ),
    _f(
        "book",
        "book_micro_ticks",
        "(microprice − mid) / tick at the last book state, microprice = (ask·q_bid + bid·q_ask)/(q_bid + q_ask)"
        " of the best level, signed into the level",
    ),
    _f(
        "book",
        "book_micro_ticks_30s",
        "time-weighted mean of book_micro_ticks over 30 s, signed into the level",
    ),
    _f("book", "book_spread_ticks", "best ask − best bid in ticks at the last book state"),
    _f("book", "book_depth_log", "log(1 + resting size over both sides' ten visible levels)"),
    _f(
        "book",
        "book_level_vs_opposite",
        "log(1 + size within ±4 ticks of the level on the side to consume) − log(1 + size of the opposite"
        " side's 9 best levels): the wall ahead against the support behind",
    ),
    _f(
        "book",
        "book_wall_prominence",
        "log(1 + largest visible level within ±4 ticks of the level on the side to consume) − log(1 + median"
        " level size of that side); 0 when the level is not within the ten visible levels",
    ),
    _f("tape", "tape_near_vol_60s", "log(1 + contracts traded within 0.5 ATR of the level in the last 60 s)"),
    _f(
        "tape",
        "tape_near_vol_300s",
        "log(1 + contracts traded within 0.5 ATR of the level in the last 300 s)",
    ),
    _f(
        "tape",
        "tape_imbalance_60s",
        "(buy − sell aggressor volume) / total over the last 60 s, signed into the level",
    ),
    _f(
        "tape",
        "tape_imbalance_300s",
        "(buy − sell aggressor volume) / total over the last 300 s, signed into the level",
    ),
    *(
        _f(
            "tape",
            f"tape_count_imb_{w}s",
            f"(buy − sell aggressor trades) / trades over the last {w} s, counting trades not contracts,"
            " signed into the level",
        )
        for w in (60, 120)
    ),
    _f("tape", "tape_rate_60s", "front-month trades per second over the last 60 s"),
    *[
        _f(
            "dealer",
            f"dealer_gex_{w}",
            f"net 0DTE gamma exposure of strikes within ±{w} points of the level, $bn per 1 % move",
        )
        for w in (5, 10, 15)
    ],
    _f("dealer", "dealer_gex_total", "net 0DTE gamma exposure of the whole chain, $bn per 1 % move"),
    _f("dealer", "dealer_call_wall_atr", "(strike of the largest call |GEX| − level) / ATR"),
    _f("dealer", "dealer_put_wall_atr", "(strike of the largest put |GEX| − level) / ATR"),
    _f(
        "dealer",
        "dealer_gex_level_z",
        "net GEX of strikes within ±10 points of the level with the future placed at the level (every line"
        " at the ATM vol), as a z-score against the same profile at every listed 0DTE strike",
    ),
    _f("dealer", "dealer_missing", "1 if the day's options files are missing (dealer features are then NaN)"),
    _f("context", "ctx_minutes", "minutes since 09:30 ET"),
    _f("context", "ctx_atr_points", "ATR in index points"),
    _f("context", "ctx_rth_range_atr", "(RTH high − RTH low so far) / ATR"),
    _f("context", "ctx_level_is_dynamic", "1 for SMA_90 / EMA_20 (moving levels), 0 for fixed levels"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)


def by_group(group: str) -> tuple[str, ...]:
    return tuple(f.name for f in FEATURES if f.group == group)


KEY_FIELDS: tuple[pa.Field, ...] = (
    pa.field("date", pa.date32(), nullable=False),
    pa.field("ts", pa.timestamp("ns", tz="UTC"), nullable=False),
    pa.field("level_kind", pa.string(), nullable=False),
    pa.field("direction", pa.string(), nullable=False),
    pa.field("time_bucket", pa.int8(), nullable=False),
    pa.field("level_price", pa.float64(), nullable=False),
    pa.field("price", pa.float64(), nullable=False),
)
STATE_SCHEMA = pa.schema(
    [*KEY_FIELDS, *(pa.field(f.name, pa.float64(), metadata={"group": f.group}) for f in FEATURES)],
    metadata={"conventions": __doc__.split("\n\n", 1)[1].strip() if __doc__ else ""},
)


def markdown() -> str:
    """The feature list as a markdown table (kept in docs/FEATURES.md by a test)."""
    lines = ["| group | feature | definition |", "|---|---|---|"]
    lines += [f"| {f.group} | `{f.name}` | {f.definition} |" for f in FEATURES]
    return "\n".join(lines) + "\n"
