"""Rows skipped as bad, counted over workers and ranks: reported, logged, and bounded."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from frcnn.data.row_checks import MALFORMED_ANNOTATION_FILE, MISSING_ANNOTATION_FILE, MISSING_IMAGE_FILE, ROW_SKIP_KINDS
from frcnn.data.source import DataSourceError
from frcnn.distributed import gather_objects

log = logging.getLogger(__name__)
# Kinds that cost a whole row (the others are boxes dropped, rows repaired, annotations left out).
LOST_ROW_KINDS = frozenset(
    (*ROW_SKIP_KINDS, MISSING_IMAGE_FILE, MISSING_ANNOTATION_FILE, MALFORMED_ANNOTATION_FILE, "no_box_after_clipping")
)


class DataReport(Callback):
    """After every validation and at the end of training: the rows skipped (and the boxes dropped,
    the rows repaired) per split and kind,
    in the log (one line) and in the loggers (`data/skipped_<kind>`, both splits summed); a
    split that lost more than the data module's `max_skip_fraction` of its rows stops the run
    with one line naming the largest kind and an image_id of it.

    Runs on every rank at the same hooks (it gathers every rank's counts).
    """

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Each validation reads its rows again: count one pass (the sanity check's too).
        stream = getattr(trainer.datamodule, "val_dataset", None)
        if stream is not None:
            stream.reset_decode_problems()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report(trainer)

    def _report(self, trainer: pl.Trainer) -> None:
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "streams"):
            return
        splits = gather_objects({split: _local_counts(stream) for split, stream in datamodule.streams().items()})
        totals: Counter[str] = Counter()
        lines = []
        for split in splits[0]:
            per_rank = [ranks[split] for ranks in splits]
            skipped = Counter(per_rank[0]["annotations"])  # found in the annotations: the same on every rank
            for counts in per_rank:
                skipped.update(counts["decoding"])
            totals.update(skipped)
            if skipped:
                lines.append(f"{split}: " + ", ".join(f"{kind}={count}" for kind, count in skipped.most_common()))
            self._check(split, skipped, per_rank, getattr(datamodule, "max_skip_fraction", 1.0))
        if lines and trainer.is_global_zero:
            log.warning("data: rows skipped as bad at step %d — %s", trainer.global_step, "; ".join(lines))
        elif trainer.is_global_zero and trainer.validating and not trainer.sanity_checking:
            log.info("data: no row skipped as bad at step %d", trainer.global_step)
        metrics = {f"data/skipped_{kind}": float(count) for kind, count in totals.items()}
        if metrics:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)

    @staticmethod
    def _check(split: str, skipped: Counter[str], per_rank: list[dict[str, Any]], max_fraction: float) -> None:
        """Stop when the split's lost share (bad annotations over its rows, plus images that failed
        over the rows read so far) is over `max_fraction`."""
        num_rows = max(per_rank[0]["num_rows"], 1)
        rows_read = max(sum(counts["rows_read"] for counts in per_rank), 1)
        lost = sum(n for kind, n in per_rank[0]["annotations"].items() if kind in LOST_ROW_KINDS) / num_rows
        lost += sum(n for counts in per_rank for kind, n in counts["decoding"].items() if kind in LOST_ROW_KINDS) / rows_read
        if lost <= max_fraction:
            return
        kind, count = next((kind, count) for kind, count in skipped.most_common() if kind in LOST_ROW_KINDS)
        example = next((counts["examples"][kind] for counts in per_rank if counts["examples"].get(kind)), None)
        raise DataSourceError(
            f"data split {split!r} lost {lost:.1%} of its rows as bad (most: {kind}={count}, e.g. image_id={example}), "
            f"over data.max_skip_fraction={max_fraction}: fix the data or raise data.max_skip_fraction"
        )


def _local_counts(stream: Any) -> dict[str, Any]:
    """What one rank knows of a stream's skipped rows."""
    kinds = set(stream.annotation_problems) | set(stream.decode_problems())
    return {
        "annotations": dict(stream.annotation_problems),
        "decoding": stream.decode_problems(),
        "num_rows": stream.num_rows,
        "rows_read": stream.rows_read,
        "examples": {kind: stream.skip_example(kind) for kind in kinds},
    }
