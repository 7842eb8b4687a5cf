"""The outcome vocabulary: what followed an episode, at which horizons, and the codes for it.

An episode is labelled by the first crossing of ±``THRESHOLD_ATR`` from its anchor price within
each horizon: BREAK (through the level), REJECT (away from it) or CHOP (neither in time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

OUTCOMES: tuple[str, ...] = ("BREAK", "REJECT", "CHOP")
CROSSINGS: tuple[str, ...] = ("BREAK", "REJECT", "TIE", "NONE")
HORIZONS_MIN: tuple[int, ...] = (2, 4, 8, 20)
PRIMARY_HORIZON_MIN: Final = 8
THRESHOLD_ATR = 1.0
BREAK = OUTCOMES.index("BREAK")


def label_codes(labels: Sequence[str | None] | pa.Array | pa.ChunkedArray) -> npt.NDArray[np.int8]:
    """BREAK/REJECT/CHOP → 0/1/2; null (or anything else) → −1 (a list or an Arrow string column)."""
    col = labels if isinstance(labels, pa.Array | pa.ChunkedArray) else pa.array(list(labels), pa.string())
    out = np.full(len(col), -1, dtype=np.int8)
    for i, name in enumerate(OUTCOMES):
        hit = pc.fill_null(pc.equal(col, pa.scalar(name)), False)
        out[np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool)] = i
    return out


def horizon_index(horizon: int) -> int:
    """Position of a horizon in :data:`HORIZONS_MIN`; ``ValueError`` if it is not one."""
    if horizon not in HORIZONS_MIN:
        raise ValueError(f"horizon must be one of {HORIZONS_MIN}")
    return HORIZONS_MIN.index(horizon)
