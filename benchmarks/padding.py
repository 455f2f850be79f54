"""Padded pixels per real pixel of training batches, with and without aspect-ratio grouping.

    python benchmarks/padding.py [--images 20000] [--batch-size 2] [--readers 8]

Image sizes are drawn from a COCO-like mix (the most frequent train2017 sizes, in rough
proportions: an assumption written below, not a measurement), resized as training resizes them
(short side 800, long side <= 1333), and dealt by the real `TrainingPlan` to `readers` readers;
each batch pads to its largest height and width rounded up to 32, as the model does.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from frcnn.data.partition import TrainingPlan

# (width, height, share): landscape about 70 %, portrait about 25 %, square the rest.
COCO_LIKE_SIZES = (
    (640, 480, 0.35), (640, 427, 0.25), (640, 426, 0.05), (500, 375, 0.05),
    (480, 640, 0.12), (427, 640, 0.10), (375, 500, 0.03),
    (640, 640, 0.03), (612, 612, 0.02),
)  # fmt: skip


def resized(width: int, height: int, min_size: int = 800, max_size: int = 1333) -> tuple[int, int]:
    scale = min(min_size / min(width, height), max_size / max(width, height))
    return round(width * scale), round(height * scale)


def padding_ratio(sizes: np.ndarray, rows: np.ndarray, batch_size: int, divisible: int = 32) -> tuple[int, int]:
    """(padded pixels, real pixels) of the batches `rows` makes, `sizes` (R, 2) = resized (w, h)."""
    batches = sizes[rows].reshape(-1, batch_size, 2)
    padded = np.ceil(batches.max(axis=1) / divisible) * divisible
    return int((padded.prod(axis=1) * batch_size).sum()), int(batches.prod(axis=2).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--readers", type=int, default=8)
    parser.add_argument("--shuffle-block", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    shares = np.array([share for *_, share in COCO_LIKE_SIZES])
    picks = rng.choice(len(COCO_LIKE_SIZES), size=args.images, p=shares / shares.sum())
    sizes = np.array([resized(*COCO_LIKE_SIZES[pick][:2]) for pick in picks])
    groups = (sizes[:, 1] > sizes[:, 0]).astype(np.int64)
    starts = np.arange(0, args.images + 1, 100)
    usable = np.ones(args.images, dtype=bool)
    for name, plan in (("ungrouped", TrainingPlan(starts, usable, 0)), ("grouped", TrainingPlan(starts, usable, 0, groups))):
        padded = real = 0
        for reader in range(args.readers):
            rows = plan.reader_rows(0, reader, args.readers, args.batch_size, args.shuffle_block)
            reader_padded, reader_real = padding_ratio(sizes, rows, args.batch_size)
            padded, real = padded + reader_padded, real + reader_real
        print(f"{name:>10}: {padded / real:.3f} padded pixels per real pixel (batch {args.batch_size}, {args.readers} readers)")


if __name__ == "__main__":
    main()
