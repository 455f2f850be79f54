"""`RowCounts`: per-worker slots summed on read, examples kept, written across processes."""

import multiprocessing

from frcnn.data.row_checks import DEGENERATE_BOX, UNDECODABLE_IMAGE
from frcnn.data.row_counts import RowCounts


def _count_in_worker(counts: RowCounts) -> None:
    counts.read(1)
    counts.add(1, UNDECODABLE_IMAGE, image_id=42)


def test_slots_are_summed_and_shared_with_worker_processes():
    counts = RowCounts()
    counts.read(0)
    counts.add(0, DEGENERATE_BOX, 3)
    worker = multiprocessing.get_context("fork").Process(target=_count_in_worker, args=(counts,))
    worker.start()
    worker.join()
    assert worker.exitcode == 0
    assert counts.totals() == {UNDECODABLE_IMAGE: 1, DEGENERATE_BOX: 3} and counts.rows_read == 2
    assert counts.example(UNDECODABLE_IMAGE) == 42 and counts.example(DEGENERATE_BOX) is None
    assert counts.example("missing_image_file") is None  # a source's own kind: not counted here
    counts.reset()
    assert counts.totals() == {} and counts.rows_read == 0
