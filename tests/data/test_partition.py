"""`TrainingPlan` and `validation_rows`: who reads which rows, by hand-checked counts."""

from collections import Counter

import numpy as np

from frcnn.data.partition import TrainingPlan, validation_rows


def test_training_windows_carry_the_remainder_so_counts_differ_by_at_most_one():
    """27 usable rows, 4 readers, batch 2: 24 rows an epoch; after every epoch each row was read
    floor or ceil(24 e / 27) times."""
    starts = np.array([0, 5, 13, 20, 27, 30])
    usable = np.ones(30, dtype=bool)
    usable[[2, 14, 29]] = False
    plan = TrainingPlan(starts, usable, seed=5)
    counts = Counter()
    for epoch in range(7):
        epoch_rows = [plan.reader_rows(epoch, reader, 4, 2, shuffle_block=3) for reader in range(4)]
        assert {len(rows) for rows in epoch_rows} == {6}
        assert len(set(np.concatenate(epoch_rows).tolist())) == 24  # no row twice in an epoch
        counts.update(np.concatenate(epoch_rows).tolist())
        assert set(counts) <= set(np.flatnonzero(usable).tolist())
        values = [counts[row] for row in np.flatnonzero(usable).tolist()]
        assert max(values) - min(values) <= 1


def test_validation_shares_cover_the_split_once():
    shares = [validation_rows(10, reader, 4) for reader in range(4)]
    assert [len(share) for share in shares] == [2, 3, 2, 3]
    assert np.concatenate(shares).tolist() == list(range(10))
    assert [len(validation_rows(3, reader, 8)) for reader in range(8)].count(0) == 5  # readers with no row
