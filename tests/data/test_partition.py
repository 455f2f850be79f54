"""`TrainingPlan` and `validation_rows`: who reads which rows, by hand-checked counts."""

from collections import Counter

import numpy as np

from frcnn.data.partition import TrainingPlan, group_batches, validation_rows


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


def test_grouped_batches_hold_one_aspect_group_and_keep_every_readers_rows():
    """Grouping reorders a reader's rows into batches of one group; which rows each reader reads,
    and how many, stays what the ungrouped plan gives (equal work, the same rows)."""
    starts = np.array([0, 37, 80, 120])
    usable = np.ones(120, dtype=bool)
    usable[[3, 50, 99]] = False
    groups = np.random.default_rng(0).integers(0, 2, size=120)
    plain, grouped = TrainingPlan(starts, usable, seed=1), TrainingPlan(starts, usable, seed=1, groups=groups)
    for epoch in range(3):
        for reader in range(3):
            rows = grouped.reader_rows(epoch, reader, 3, 4, shuffle_block=12)
            assert sorted(rows.tolist()) == sorted(plain.reader_rows(epoch, reader, 3, 4, shuffle_block=12).tolist())
            batches = groups[rows].reshape(-1, 4)
            mixed = [index for index, batch in enumerate(batches) if len(set(batch.tolist())) > 1]
            assert len(mixed) <= len(rows) // 12  # at most one mixed batch per block of 3 batches
            assert all(index % 3 == 2 for index in mixed)  # and it is its block's last


def test_group_batches_emits_batches_as_they_fill_then_the_leftovers():
    """Hand-checked: groups 0 1 0 0 1 1 0 1 0 1 in order, batches of 2 fill at rows 2, 4, 6, 7; 8 and 9 are left."""
    groups = np.array([0, 1, 0, 0, 1, 1, 0, 1, 0, 1])
    assert group_batches(np.arange(10), groups, 2).tolist() == [0, 2, 1, 4, 3, 6, 5, 7, 8, 9]
