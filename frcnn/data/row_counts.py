"""`RowCounts`: what a stream's DataLoader workers read and skipped, by kind, in shared memory.

Each worker writes its own slot (its worker id), so nothing is locked; the main process sums the
slots when it reports (`frcnn.lit.data_report`). The tensors are shared before any worker starts,
so `fork`, `spawn` and `forkserver` workers all write the main process's counters.
"""

from __future__ import annotations

import torch

from frcnn.data.row_checks import ROW_COUNT_KINDS, ROW_SKIP_KINDS

# What the workers count (`frcnn.data.row_checks`), in the order of the counters: rows skipped,
# boxes dropped or rows repaired, and training rows left without a box.
COUNTED_KINDS: tuple[str, ...] = (*ROW_SKIP_KINDS, *ROW_COUNT_KINDS, "no_box_after_clipping")
MAX_WORKERS = 256  # slots, one per DataLoader worker id


class RowCounts:
    """Rows read, and rows skipped or repaired per kind with an example image_id, per worker slot."""

    def __init__(self) -> None:
        self._counts = torch.zeros(MAX_WORKERS, len(COUNTED_KINDS), dtype=torch.int64).share_memory_()
        self._examples = torch.zeros(MAX_WORKERS, len(COUNTED_KINDS), dtype=torch.int64).share_memory_()
        self._rows_read = torch.zeros(MAX_WORKERS, dtype=torch.int64).share_memory_()

    def read(self, slot: int) -> None:
        """One more row tried by worker `slot`."""
        self._rows_read[slot] += 1

    def add(self, slot: int, kind: str, number: int = 1, image_id: int | None = None) -> None:
        """`number` more of `kind` in worker `slot`; `image_id` is kept as an example."""
        index = COUNTED_KINDS.index(kind)
        self._counts[slot, index] += number
        if image_id is not None:
            self._examples[slot, index] = image_id

    def reset(self, slot: int | None = None) -> None:
        """Start counting anew, in worker `slot` only or in every slot. A validation reader
        resets its own slot when its pass starts: Lightning fetches the first batches before any
        callback hook of the pass runs, so a reset from the main process would lose them."""
        rows = slice(None) if slot is None else slot
        self._counts[rows] = 0
        self._rows_read[rows] = 0

    def totals(self) -> dict[str, int]:
        """The counts of every worker summed, by kind (kinds never seen left out)."""
        return {kind: count for kind, count in zip(COUNTED_KINDS, self._counts.sum(0).tolist()) if count}

    def example(self, kind: str) -> int | None:
        """An image_id counted for `kind`, if any."""
        if kind not in COUNTED_KINDS:
            return None
        column = self._examples[:, COUNTED_KINDS.index(kind)]
        found = column[column != 0]
        return int(found[0]) if len(found) else None

    @property
    def rows_read(self) -> int:
        """Rows the workers have tried so far."""
        return int(self._rows_read.sum())
