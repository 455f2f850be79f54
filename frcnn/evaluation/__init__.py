"""COCO evaluation against the dataset's own annotations: one metric for the training app's
validation and for ``evaluate.py``.

Usage (boxes ``xyxy`` in ORIGINAL image pixels, labels 1..C-1, label 0 = background)::

    from frcnn.evaluation import COCOEvaluator

    evaluator = COCOEvaluator(dm.label_to_category_id, ground_truth=dm.val_ground_truth())
    # per batch; preds: [{"boxes", "scores", "labels"}], one dataset image id (and decoded size) per prediction
    evaluator.update(preds, [target["image_id"] for target in targets], [target["orig_size"] for target in targets])
    metrics = evaluator.compute()   # {"map", "map_50", "map_75", "map_small", "map_medium", "map_large",
                                    #  "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"}
                                    #  (+ "map_per_class", "classes" with class_metrics=True)
    evaluator.reset()

The ground truth is a COCO instances dict built from the split's rows by
``coco_ground_truth_from_rows`` (or a user's file, ``load_ground_truth_json``): stored boxes,
areas, crowds and ids, with the training targets' own drops and rescale (docs/data.md, "Bad
data"); untouched on data without those problems. ``evaluator.coco_ground_truth()`` / ``coco_results()`` give the
COCO dicts behind the numbers (``write_json`` them), ``evaluator.summary()`` the 12 numbers and
per-category AP; ``format_coco_table`` / ``format_per_class_table`` print them;
``draw_detections`` pictures them.
"""

from frcnn.evaluation.coco_format import coco_results, write_json
from frcnn.evaluation.coco_metric import COCO_STAT_NAMES, METRIC_KEYS, COCOEvaluator, COCOSummary, evaluate_coco
from frcnn.evaluation.ground_truth import (
    GroundTruthError,
    coco_ground_truth_from_rows,
    load_ground_truth_json,
    restrict_to_images,
)

__all__ = [
    "COCO_STAT_NAMES",
    "METRIC_KEYS",
    "COCOEvaluator",
    "COCOSummary",
    "GroundTruthError",
    "coco_ground_truth_from_rows",
    "coco_results",
    "evaluate_coco",
    "load_ground_truth_json",
    "restrict_to_images",
    "write_json",
]
