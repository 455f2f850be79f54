"""Samples a fixed budget of positive and negative training examples per image."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["BalancedSampler"]


class BalancedSampler:
    """Draws up to ``batch_size_per_image`` examples per image, at most
    ``positive_fraction`` of them positive, the rest negative, uniformly at random.

    Batched without host synchronisation: every image gets the same number of slots
    ``S = min(batch_size_per_image, N)``; slots an image cannot fill are marked invalid.
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        if batch_size_per_image < 1 or not 0.0 <= positive_fraction <= 1.0:
            raise ValueError(
                f"need batch_size_per_image >= 1 and 0 <= positive_fraction <= 1, got "
                f"{batch_size_per_image} and {positive_fraction}"
            )
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def __call__(self, labels: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Sample from ``labels [B, N]``: ``>= 1`` positive, ``0`` negative, ``-1`` ignored.
        ``generator``: where the draws come from (None: torch's global random stream).

        Returns:
            indices ``[B, S]`` into N, positives first; valid ``[B, S]`` bool, False for unused slots.
        """
        num_candidates = labels.shape[1]
        max_positives = int(self.batch_size_per_image * self.positive_fraction)
        positive = self._random_subset(labels >= 1, min(max_positives, num_candidates), generator=generator)
        num_negatives = self.batch_size_per_image - positive.sum(dim=1, keepdim=True)
        negative = self._random_subset(labels == 0, min(self.batch_size_per_image, num_candidates), num_negatives, generator)
        # Positives rank 2, negatives 1, the rest 0: one top-k gathers the sample.
        rank = positive.to(torch.int8) * 2 + negative.to(torch.int8)
        num_slots = min(self.batch_size_per_image, num_candidates)
        top_rank, indices = rank.topk(num_slots, dim=1)
        return indices, top_rank > 0

    @staticmethod
    def _random_subset(
        eligible: Tensor, max_count: int, count: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Mask ``[B, N]`` of ``min(count, max_count, eligible)`` random eligible entries per row."""
        keys = torch.rand(eligible.shape, device=eligible.device, generator=generator).masked_fill_(~eligible, -1.0)
        top_keys, top_indices = keys.topk(max_count, dim=1)
        chosen = top_keys >= 0
        if count is not None:
            chosen &= torch.arange(max_count, device=eligible.device) < count
        return torch.zeros_like(eligible).scatter_(1, top_indices, chosen)
