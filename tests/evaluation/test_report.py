"""Printed tables and metrics.json, against pycocotools' own printout."""

import contextlib
import io
import json

import numpy as np

from frcnn.evaluation import write_json
from frcnn.evaluation.report import format_coco_table, format_per_class_table, write_metrics
from coco_case import CLASS_NAMES, hand_built_case, hand_built_evaluator, image_ids, pycocotools_eval


def test_table_matches_pycocotools_printout(tmp_path):
    evaluator = hand_built_evaluator()
    preds, rows = hand_built_case()
    evaluator.update(preds, image_ids(rows))
    write_json(evaluator.coco_ground_truth(), tmp_path / "gt.json")
    write_json(evaluator.coco_results(), tmp_path / "dt.json")
    oracle = pycocotools_eval(tmp_path / "gt.json", tmp_path / "dt.json")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        oracle.summarize()
    assert format_coco_table(evaluator.summary().stats) == printed.getvalue().rstrip("\n")


def test_per_class_table_and_metrics_json(tmp_path):
    evaluator = hand_built_evaluator(class_names=CLASS_NAMES + ["unseen"])
    preds, rows = hand_built_case()
    evaluator.update(preds, image_ids(rows))
    summary = evaluator.summary()
    lines = format_per_class_table(summary).splitlines()
    assert lines[0].split() == ["class", "AP"]
    assert lines[-1] == " (1 of 4 classes have no ground truth here)"
    values = [float(line.split()[1]) for line in lines[1:-1]]
    assert values == sorted(values, reverse=True) and len(values) == 3

    metrics = json.loads(write_metrics(summary, tmp_path / "metrics.json", num_images=8).read_text())
    assert list(metrics)[:12] == ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    np.testing.assert_array_equal([metrics[name] for name in list(metrics)[:12]], summary.stats)
    assert [row["name"] for row in metrics["per_class"]][-1] == "unseen"
    assert metrics["per_class"][-1]["AP"] == -1 and metrics["num_images"] == 8
