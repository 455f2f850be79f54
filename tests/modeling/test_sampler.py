"""frcnn.modeling.sampler: how many positives and negatives each image gets."""

import torch

from frcnn.modeling.sampler import BalancedSampler


def test_sampler_counts():
    labels = torch.full((3, 200), -1)
    labels[0, :10], labels[0, 10:110] = 1, 0  # plenty of both
    labels[1, :3], labels[1, 3:110] = 2, 0  # few positives: negatives fill the budget
    labels[2, :5], labels[2, 5:9] = 1, 0  # fewer candidates than the budget
    sampled, valid = BalancedSampler(32, 0.25)(labels)
    picked = labels.gather(1, sampled)
    assert sampled.shape == (3, 32)
    assert [int(((picked > 0) & valid)[i].sum()) for i in range(3)] == [8, 3, 5]
    assert [int(((picked == 0) & valid)[i].sum()) for i in range(3)] == [24, 29, 4]
    assert not (valid & (picked < 0)).any(), "ignored entries are never sampled"
    for row, row_valid in zip(sampled, valid):
        assert len(set(row[row_valid].tolist())) == int(row_valid.sum()), "no entry twice"
    torch.manual_seed(1)
    first = BalancedSampler(32, 0.25)(labels)[0]
    assert not torch.equal(first, BalancedSampler(32, 0.25)(labels)[0]), "draws are random"
