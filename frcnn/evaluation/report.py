"""Printing and saving a :class:`~frcnn.evaluation.coco_metric.COCOSummary`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from frcnn.evaluation.coco_format import write_json
from frcnn.evaluation.coco_metric import COCO_STAT_NAMES, COCOSummary

# (AP or AR, IoU, area, maxDets) of each of the 12 numbers, in pycocotools' order.
_STAT_ROWS = (
    (1, "0.50:0.95", "all", 100),
    (1, "0.50", "all", 100),
    (1, "0.75", "all", 100),
    (1, "0.50:0.95", "small", 100),
    (1, "0.50:0.95", "medium", 100),
    (1, "0.50:0.95", "large", 100),
    (0, "0.50:0.95", "all", 1),
    (0, "0.50:0.95", "all", 10),
    (0, "0.50:0.95", "all", 100),
    (0, "0.50:0.95", "small", 100),
    (0, "0.50:0.95", "medium", 100),
    (0, "0.50:0.95", "large", 100),
)


def format_coco_table(stats) -> str:
    """The 12 numbers (sequence of 12 floats) in pycocotools' ``COCOeval.summarize`` layout."""
    lines = []
    for (is_ap, iou, area, max_dets), value in zip(_STAT_ROWS, stats):
        title, kind = ("Average Precision", "(AP)") if is_ap else ("Average Recall", "(AR)")
        lines.append(f" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6s} | maxDets={max_dets:>3d} ] = {value:0.3f}")
    return "\n".join(lines)


def per_class_rows(summary: COCOSummary) -> list[dict[str, Any]]:
    """Per-class AP as ``{"name", "category_id", "AP"}``, best first; classes without
    ground truth (AP -1) last."""
    rows = [
        {"name": name, "category_id": category_id, "AP": ap}
        for name, category_id, ap in zip(
            summary.category_names, summary.category_ids.tolist(), summary.ap_per_category.tolist()
        )
    ]
    return sorted(rows, key=lambda row: (row["AP"] < 0, -row["AP"], row["name"]))


def format_per_class_table(summary: COCOSummary) -> str:
    """Per-class AP@[.5:.95] as an aligned two-column table, best first; the classes without
    ground truth in the evaluated images are counted in a last line, not listed."""
    rows = per_class_rows(summary)
    scored = [row for row in rows if row["AP"] >= 0]
    width = max([len("class")] + [len(row["name"]) for row in scored])
    lines = [f" {'class':<{width}}     AP"]
    lines += [f" {row['name']:<{width}}  {row['AP']:0.3f}" for row in scored]
    if len(scored) < len(rows):
        lines.append(f" ({len(rows) - len(scored)} of {len(rows)} classes have no ground truth here)")
    return "\n".join(lines)


def metrics_dict(summary: COCOSummary, **extra: Any) -> dict[str, Any]:
    """What ``metrics.json`` holds: the 12 numbers under ``COCO_STAT_NAMES``, ``per_class``
    (see :func:`per_class_rows`) and any ``extra`` entries (image and detection counts)."""
    metrics: dict[str, Any] = dict(zip(COCO_STAT_NAMES, summary.stats.tolist()))
    metrics["per_class"] = per_class_rows(summary)
    metrics.update(extra)
    return metrics


def write_metrics(summary: COCOSummary, path: str | Path, **extra: Any) -> Path:
    """Write :func:`metrics_dict` to ``path`` (``metrics.json``)."""
    return write_json(metrics_dict(summary, **extra), path)
