"""`UnitReader`: the rows of a reading order, read one unit (a parquet row group) at a time."""

from __future__ import annotations

import numpy as np

from frcnn.data.source import Row, RowSource


class UnitReader:
    """The rows of `order` (global row indices), read unit by unit; a unit is kept only until the
    last position of `order` that needs it, so memory holds a few units, never the split."""

    def __init__(self, source: RowSource, order: np.ndarray) -> None:
        self.source = source
        self.order = order
        self.starts = source.unit_starts
        self.unit_of = np.searchsorted(self.starts, order, side="right") - 1
        self.last_use = np.zeros(len(self.starts), dtype=np.int64)
        self.last_use[self.unit_of] = np.arange(len(order))  # later positions overwrite earlier ones
        self.units: dict[int, list[Row]] = {}

    def row(self, position: int) -> Row:
        """The row at `position` of the order."""
        unit = int(self.unit_of[position])
        if unit not in self.units:
            self.units[unit] = self.source.read_unit(unit)
        row = self.units[unit][int(self.order[position] - self.starts[unit])]
        if self.last_use[unit] <= position:
            del self.units[unit]
        return row
