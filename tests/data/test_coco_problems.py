"""A COCO folder with a missing image file and annotations of unknown category/image ids:
checked when opened, left out, counted, and each kind named in one warning line."""

from __future__ import annotations

import json
import logging

from PIL import Image

from frcnn.data import row_checks as kinds
from frcnn.data.sources.coco_folder import CocoFolder, CocoFolderSplit
from frcnn.data.datamodule import DetectionDataModule


def write_problem_folder(root, split="train"):
    """Images 1, 2 on disk, image 3 listed without a file; category 42 unknown (2 annotations),
    image id 77 unknown (1 annotation)."""
    split_dir = root / split
    (split_dir / "images").mkdir(parents=True)
    for image_id in (1, 2):
        Image.new("RGB", (64, 48), (90, 90, 90)).save(split_dir / "images" / f"{image_id}.jpg")
    box = [4, 6, 20, 10]
    annotations = [
        {"id": 10, "image_id": 1, "category_id": 5, "bbox": box, "iscrowd": 0, "area": 200},
        {"id": 11, "image_id": 1, "category_id": 42, "bbox": box, "iscrowd": 0, "area": 200},
        {"id": 12, "image_id": 2, "category_id": 42, "bbox": box, "iscrowd": 0, "area": 200},
        {"id": 13, "image_id": 2, "category_id": 5, "bbox": box, "iscrowd": 0, "area": 200},
        {"id": 14, "image_id": 3, "category_id": 5, "bbox": box, "iscrowd": 0, "area": 200},
        {"id": 15, "image_id": 77, "category_id": 5, "bbox": box, "iscrowd": 0, "area": 200},
    ]
    coco = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 48} for i in (1, 2, 3)],
        "annotations": annotations,
        "categories": [{"id": 5, "name": "airplane"}],
    }
    (split_dir / "instances.json").write_text(json.dumps(coco))
    return split_dir


def test_problems_are_counted_and_named_once_each(tmp_path, caplog):
    split_dir = write_problem_folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="frcnn.data.coco_problems"):
        folder = CocoFolderSplit(tmp_path, "train")
    assert folder.problems == {kinds.MISSING_IMAGE_FILE: 1, kinds.UNKNOWN_CATEGORY: 2, kinds.UNKNOWN_IMAGE: 1}
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3 and all("\n" not in line for line in lines)
    assert f"1 image(s) have no file, e.g. {split_dir / 'images' / '3.jpg'}" in lines[0]
    assert "2 annotation(s) with an unknown category id (42)" in lines[1]
    assert "1 annotation(s) with an unknown image id (77)" in lines[2]
    assert [image["id"] for image in folder.images] == [1, 2]
    with caplog.at_level(logging.WARNING, logger="frcnn.data.coco_problems"):
        assert CocoFolderSplit(tmp_path, "train").problems == folder.problems
    assert len(caplog.records) == 3, "said once per process"
    assert {image_id: [a["id"] for a in kept] for image_id, kept in folder.annotations_of.items()} == {1: [10], 2: [13]}


def test_folder_with_problems_streams_the_good_rows(tmp_path):
    write_problem_folder(tmp_path)
    (tmp_path / "val").symlink_to(tmp_path / "train")
    dm = DetectionDataModule(CocoFolder, path=str(tmp_path), num_workers=0, batch_size=2, resize="none")
    dm.setup("validate")
    targets = {int(t["image_id"]): t["labels"].tolist() for _, batch in dm.val_dataloader() for t in batch}
    assert targets == {1: [1], 2: [1]}


def test_clean_folder_has_zero_problems(tmp_path, caplog):
    split_dir = write_problem_folder(tmp_path)
    coco = json.loads((split_dir / "instances.json").read_text())
    coco["images"] = coco["images"][:2]
    coco["annotations"] = [a for a in coco["annotations"] if a["category_id"] == 5 and a["image_id"] in (1, 2)]
    (split_dir / "instances.json").write_text(json.dumps(coco))
    with caplog.at_level(logging.WARNING, logger="frcnn.data.coco_problems"):
        assert set(CocoFolderSplit(tmp_path, "train").problems.values()) == {0}
    assert not caplog.records


def test_a_repeated_image_is_counted_and_read_once(tmp_path):
    """Image 2 listed twice in instances.json: trained on once, scored once, counted once; the
    loader's, the ground truth's and the metric's image counts agree."""
    split_dir = tmp_path / "train"
    (split_dir / "images").mkdir(parents=True)
    images = []
    for image_id in (1, 2, 3):
        Image.new("RGB", (64, 48), (30 * image_id, 90, 90)).save(split_dir / "images" / f"{image_id}.jpg")
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": 64, "height": 48})
    box = [4, 6, 20, 10]
    coco = {
        "images": [*images, images[1]],
        "annotations": [{"id": 10 + i, "image_id": i, "category_id": 5, "bbox": box, "iscrowd": 0, "area": 200} for i in (1, 2, 3)],
        "categories": [{"id": 5, "name": "airplane"}],
    }
    (split_dir / "instances.json").write_text(json.dumps(coco))
    dm = DetectionDataModule(CocoFolder, path=str(tmp_path), val_split="train", batch_size=1, num_workers=0, min_size=48, max_size=64)
    dm.setup("fit")
    assert dm.train_dataset.problem_counts() == {kinds.REPEATED_IMAGE: 1}
    assert dm.train_dataset.plan.num_usable == 3
    dm.set_epoch(0)
    trained = [int(target["image_id"]) for _, targets in dm.train_dataloader() for target in targets]
    assert sorted(trained) == [1, 2, 3]
    validated = [int(target["image_id"]) for _, targets in dm.val_dataloader() for target in targets]
    assert validated == [1, 2, 3]
    assert [image["id"] for image in dm.val_ground_truth()["images"]] == [1, 2, 3]
