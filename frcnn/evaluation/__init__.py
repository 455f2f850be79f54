"""COCO evaluation: one metric for the training app's validation and for ``evaluate.py``.

Usage (boxes ``xyxy`` in ORIGINAL image pixels, labels 1..C-1, label 0 = background)::

    from frcnn.evaluation import COCOEvaluator

    evaluator = COCOEvaluator(class_names=dm.class_names, label_to_category_id=dm.label_to_category_id,
                              class_metrics=False)
    # per batch; preds: [{"boxes", "scores", "labels"}], targets: [{"boxes", "labels", "image_id", "orig_size"}]
    evaluator.update(preds, targets)
    metrics = evaluator.compute()   # {"map", "map_50", "map_75", "map_small", "map_medium", "map_large",
                                    #  "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"}
                                    #  (+ "map_per_class", "classes" with class_metrics=True)
    evaluator.reset()

``evaluator.coco_ground_truth()`` / ``coco_results()`` give the COCO dicts behind the numbers
(``write_json`` them), ``evaluator.summary()`` the 12 numbers and per-category AP;
``format_coco_table`` / ``format_per_class_table`` print them; ``draw_detections`` pictures them.
"""

from frcnn.evaluation.coco_format import coco_ground_truth, coco_results, write_json
from frcnn.evaluation.coco_metric import COCO_STAT_NAMES, METRIC_KEYS, COCOEvaluator, COCOSummary, evaluate_coco

__all__ = [
    "COCO_STAT_NAMES",
    "METRIC_KEYS",
    "COCOEvaluator",
    "COCOSummary",
    "coco_ground_truth",
    "coco_results",
    "evaluate_coco",
    "write_json",
]
