"""evaluate.py's VOC part: the devkit's results files score, by the devkit's own loop over the xml
files, what the metric says; the table and metrics.json entries."""

import numpy as np

from frcnn.data.datamodule import DetectionDataModule
from frcnn.data.sources.voc import VOC_CLASSES, VOCDevkit
from frcnn.evaluation.voc_report import voc_report
from tests.data.voc_devkit import write_devkit
from tests.evaluation.voc_devkit_loop import devkit_aps_from_files


def test_results_files_score_the_same_by_the_devkit_loop(tmp_path):
    devkit = write_devkit(tmp_path)
    # Validation on 2007 + 2012 trainval: cats (one difficult), a dog, a bird and a car.
    dm = DetectionDataModule(VOCDevkit, path=str(devkit), val_sets=[[2007, "trainval"], [2012, "trainval"]], num_workers=0)
    dm.setup("validate")
    ground_truth = dm.val_ground_truth()
    rng = np.random.default_rng(0)
    results = []
    for annotation in ground_truth["annotations"] * 3:  # hits, duplicates and near misses, difficult ones too
        x, y, w, h = np.asarray(annotation["bbox"]) + rng.normal(0, 6, 4)
        results.append({"image_id": annotation["image_id"], "category_id": annotation["category_id"], "bbox": [x, y, w, h], "score": rng.random()})
    for image in ground_truth["images"] * 4:  # boxes anywhere, of any class
        x, y = rng.uniform(0, 40, 2)
        results.append({"image_id": image["id"], "category_id": int(rng.integers(1, 21)), "bbox": [x, y, *rng.uniform(5, 40, 2)], "score": rng.random()})

    report = voc_report(dm, ground_truth, results, tmp_path / "eval")

    results_dir = tmp_path / "eval" / "results" / "VOC2007" / "Main"
    assert len(list(results_dir.glob("comp4_det_trainval_*.txt"))) == 20
    # The devkit's loop over the results files and each image's xml, from its own year's folder.
    split = dm.val_dataset.source
    names = [split.image_name(image["id"]) for image in ground_truth["images"]]
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    for name in names:
        year = 2012 if name.startswith("2008_") else 2007
        (annotations / f"{name}.xml").write_bytes((devkit / f"VOC{year}" / "Annotations" / f"{name}.xml").read_bytes())
    expected = devkit_aps_from_files(annotations, names, results_dir, "comp4_det_trainval", VOC_CLASSES)
    assert sorted(expected) == ["bird", "car", "cat", "dog"]
    for name, (ap07, ap) in expected.items():
        assert abs(report.metrics["voc07_ap_per_class"][name] - ap07) < 1e-9, name
        assert abs(report.metrics["voc_ap_per_class"][name] - ap) < 1e-9, name
    assert 0.2 < report.metrics["voc07_map"] < 0.9, "hits and misses"
    assert abs(report.metrics["voc07_map"] - np.mean([ap07 for ap07, _ in expected.values()])) < 1e-9
    assert report.metrics["voc07_ap_per_class"]["person"] == -1.0
    assert " cat " in report.table and "(16 of 20 classes have no ground truth here)" in report.table
