"""The level vocabulary: the six level kinds and the two approach directions.

``direction`` is UP when price is below the level (approaching from below) and DOWN when above.
"""

from __future__ import annotations

LEVEL_KINDS: tuple[str, ...] = ("PM_HIGH", "PM_LOW", "OR_HIGH", "OR_LOW", "SMA_90", "EMA_20")
DIRECTIONS: tuple[str, ...] = ("UP", "DOWN")
