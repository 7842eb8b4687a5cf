"""The position-aware exit score: for a LONG or SHORT held into a level, how strongly to get out.

A position *wants a break* when it is pushing into the level (LONG below a level, SHORT above it:
direction UP / DOWN) and *wants a rejection* when the level is its support (LONG above, SHORT
below). The score is in [0, 1] (1: exit):

    adverse = (1 − Σ_N) / 2 if the position wants a break, else (1 + Σ_N) / 2
    exit    = (adverse + (1 − P(favourable))) / 2 when a retrieval answer is given, else adverse

where Σ_N is the net stream (push minus wall) and P(favourable) the retrieval answer's P(BREAK)
or P(REJECT), whichever the position needs.
"""

from __future__ import annotations

import math

POSITIONS: tuple[str, ...] = ("LONG", "SHORT")


def wants_break(position: str, direction: str) -> bool:
    """LONG into a level above (UP) or SHORT into one below (DOWN) needs price to go through it."""
    if position not in POSITIONS:
        raise ValueError(f"position must be one of {POSITIONS}, not {position!r}")
    return (position == "LONG") == (direction == "UP")


def exit_score(
    position: str,
    direction: str,
    net: float,
    p_break: float | None = None,
    p_reject: float | None = None,
) -> float | None:
    """The exit score (None when the net stream is not defined)."""
    if net is None or not math.isfinite(net):
        return None
    brk = wants_break(position, direction)
    adverse = (1.0 - net) / 2 if brk else (1.0 + net) / 2
    p_fav = p_break if brk else p_reject
    if p_fav is None or not math.isfinite(p_fav):
        return round(adverse, 6)
    return round((adverse + (1.0 - p_fav)) / 2, 6)
