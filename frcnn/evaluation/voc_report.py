"""`evaluate.py`'s VOC part, for a VOC devkit's val split: VOC07 / VOC2010+ AP per class, the
entries of `metrics.json`, and the devkit's results files.

Results files (`results/VOC{year}/Main/comp4_det_{set}_{class}.txt`, what the devkit's
`VOCevaldet` and Detectron2's `voc_eval` read): one detection a line,
`<image name> <score> <x1> <y1> <x2> <y2>` in VOC's 1-based pixels (our x1 + 1, y1 + 1; x2, y2
unchanged: the inverse of `frcnn.data.sources.voc`'s conversion).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from frcnn.data.sources.voc import VOCSplit
from frcnn.evaluation.voc_metric import Boxes, VOCSummary, evaluate_voc, ground_truth_boxes, result_boxes


@dataclass
class VOCReport:
    """`metrics`: `voc07_map`, `voc_map`, `voc07_ap_per_class`, `voc_ap_per_class` (-1: no
    ground truth); `table`: the per-class table to print."""

    metrics: dict[str, Any]
    table: str


def voc_report(
    datamodule: Any, ground_truth: Mapping[str, Any], results: list[dict[str, Any]], run_dir: Path
) -> VOCReport | None:
    """Score `results` (a COCO results list) against `ground_truth` (the evaluated images') by the
    VOC rules and write the results files under `run_dir`; None when the val split is not a VOC
    devkit's."""
    split = datamodule.val_dataset.source
    if not isinstance(split, VOCSplit):
        return None
    detections = result_boxes(results, datamodule.label_to_category_id)
    summary = evaluate_voc(
        detections, ground_truth_boxes(ground_truth, datamodule.label_to_category_id), datamodule.class_names[1:]
    )
    year, image_set = split.sets[0]
    folder = run_dir / "results" / f"VOC{year}" / "Main"
    write_results_files(folder, f"comp4_det_{image_set}", detections, summary.class_names, split.image_name)
    metrics = {
        "voc07_map": summary.voc07_map,
        "voc_map": summary.voc_map,
        "voc07_ap_per_class": dict(zip(summary.class_names, summary.ap07.tolist())),
        "voc_ap_per_class": dict(zip(summary.class_names, summary.ap.tolist())),
    }
    return VOCReport(metrics, format_voc_table(summary) + f"\n VOC results files: {folder}")


def format_voc_table(summary: VOCSummary) -> str:
    """Per-class AP at IoU 0.5 by both rules, in the classes' order, then the means; the classes
    without ground truth in the evaluated images are counted in a last line, not listed."""
    width = max(len("class"), *(len(name) for name in summary.class_names))
    lines = [f" {'class':<{width}}  VOC07 (11-point)  VOC2010+ (area)   (IoU 0.5, difficult ignored)"]
    for name, ap07, ap in zip(summary.class_names, summary.ap07, summary.ap):
        if ap07 >= 0:
            lines.append(f" {name:<{width}}  {ap07:16.3f}  {ap:15.3f}")
    lines.append(f" {'mAP':<{width}}  {summary.voc07_map:16.3f}  {summary.voc_map:15.3f}")
    if missing := int((summary.ap07 < 0).sum()):
        lines.append(f" ({missing} of {len(summary.class_names)} classes have no ground truth here)")
    return "\n".join(lines)


def write_results_files(
    folder: Path, prefix: str, detections: Boxes, class_names: list[str], image_name: Callable[[int], str]
) -> None:
    """`{prefix}_{class}.txt` for every class (labels 1..K), empty for a class without
    detections; detections in descending score."""
    folder.mkdir(parents=True, exist_ok=True)
    order = np.argsort(-detections.scores, kind="stable")
    one_based = detections.boxes[order] + np.array([1.0, 1.0, 0.0, 0.0])
    names = [image_name(image_id) for image_id in detections.image_ids[order].tolist()]
    lines_of: dict[int, list[str]] = {label: [] for label in range(1, len(class_names) + 1)}
    labels, scores = detections.labels[order].tolist(), detections.scores[order].tolist()
    for name, label, score, (x1, y1, x2, y2) in zip(names, labels, scores, one_based.tolist()):
        lines_of[label].append(f"{name} {score:.9g} {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f}\n")
    for label, lines in lines_of.items():
        (folder / f"{prefix}_{class_names[label - 1]}.txt").write_text("".join(lines))
