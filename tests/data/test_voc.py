"""`data=voc` on a devkit the test writes: splits, boxes, difficult objects and every bad case."""

import logging

import pytest
import torch

from frcnn.data.datamodule import DetectionDataModule
from frcnn.data.source import DataSourceError
from frcnn.data.sources.voc import VOC_CLASSES, VOCDevkit
from tests.data.voc_devkit import write_devkit

CAT, DOG, BIRD, CAR = (VOC_CLASSES.index(name) for name in ("cat", "dog", "bird", "car"))


@pytest.fixture
def devkit(tmp_path):
    return write_devkit(tmp_path)


def test_splits_rows_and_problems(devkit, caplog):
    caplog.set_level(logging.WARNING)
    source = VOCDevkit(devkit)
    assert source.categories("train") == (list(VOC_CLASSES), list(range(1, 21)))
    train = source.open("train")
    # Both years; 000001 listed twice is read once; the bad files are left out, counted.
    assert [row["image_id"] for row in train.annotations()] == [1, 2, 6, 2008000001]
    assert train.problems == {
        "missing_annotation_file": 1, "missing_image_file": 1, "malformed_annotation_file": 2, "unknown_category": 1,
    }  # fmt: skip
    warnings = [record.getMessage() for record in caplog.records if "(train)" in record.getMessage()]
    assert len(warnings) == 4  # one line per kind
    assert any("unknown_category" in line and "'unicorn' in VOC2007/Annotations/000006.xml" in line for line in warnings)
    assert any("2 image(s) left out (malformed_annotation_file), e.g. VOC2007/Annotations/000005.xml (not xml" in line for line in warnings)

    rows = {row["image_id"]: row for row in train.annotations()}
    # 1-based inclusive -> pixel coordinates: x1 - 1, y1 - 1, x2 and y2 as they are.
    assert rows[1]["objects"]["bbox"] == [[0.0, 0.0, 40.0, 30.0], [49.0, 9.0, 90.0, 60.0]]
    assert rows[1]["objects"]["category"] == [CAT, DOG]
    assert rows[1]["objects"]["area"] == [40.0 * 30.0, 41.0 * 51.0]
    assert (rows[1]["width"], rows[1]["height"]) == (96, 64)
    assert rows[2]["objects"]["difficult"] == [1, 0]
    assert rows[6]["objects"]["category"] == [BIRD]  # the unicorn left out
    assert rows[2008000001]["objects"]["category"] == [CAR]
    assert train.image_name(2008000001) == "2008_000001" and train.image_name(1) == "000001"
    assert [row["image_id"] for row in train.read_unit(0)] == [1, 2, 6, 2008000001]
    assert train.read_unit(0)[0]["image"]["bytes"][:2] == b"\xff\xd8"  # the jpeg itself


def test_difficult_objects_are_scored_not_trained(devkit):
    dm = DetectionDataModule(VOCDevkit, path=str(devkit), num_workers=0, batch_size=1, resize="none", hflip_prob=0.0)
    assert dm.num_classes == 21 and dm.class_names[1:] == list(VOC_CLASSES)
    dm.setup("fit")
    train_targets = {int(t["image_id"]): t for _, batch in dm.train_dataloader() for t in batch}
    assert sorted(train_targets) == [1, 2, 6, 2008000001]
    # 000002: the difficult cat is not a training target; the other cat is.
    torch.testing.assert_close(train_targets[2]["boxes"], torch.tensor([[4.0, 4.0, 30.0, 30.0]]))
    assert train_targets[2]["labels"].tolist() == [CAT + 1]

    val_targets = {int(t["image_id"]): t for _, batch in dm.val_dataloader() for t in batch}
    assert sorted(val_targets) == [10, 11]
    assert val_targets[10]["labels"].tolist() == [DOG + 1]  # the difficult person is not a target
    assert val_targets[11]["labels"].tolist() == [DOG + 1]  # the box outside the image is dropped ...
    assert dm.val_dataset.problem_counts() == {"box_outside_image": 1}  # ... and counted
    # The ground truth keeps both: the difficult person as a crowd (ignored by both metrics).
    annotations = [a for a in dm.val_ground_truth()["annotations"] if a["image_id"] == 10]
    assert [(a["category_id"], a["bbox"], a["iscrowd"]) for a in annotations] == [
        (DOG + 1, [3.0, 2.0, 87.0, 70.0], 0), (VOC_CLASSES.index("person") + 1, [61.0, 4.0, 29.0, 66.0], 1),
    ]  # fmt: skip


def test_bad_layout_is_one_line(tmp_path, devkit):
    with pytest.raises(DataSourceError, match=r"has no VOC2012/ImageSets/Main/test.txt: point data.path at the unpacked"):
        VOCDevkit(devkit, val_sets=[[2012, "test"]]).open("val")
    with pytest.raises(DataSourceError, match="has no VOC2007/ImageSets/Main/trainval.txt"):
        VOCDevkit(tmp_path / "nowhere").open("train")
    with pytest.raises(DataSourceError, match="'train' .* and 'val'"):
        VOCDevkit(devkit).open("test")


def test_names_that_are_not_numbers_get_positions(tmp_path):
    devkit = write_devkit(tmp_path)
    main = devkit / "VOC2007" / "ImageSets" / "Main"
    for name in ("000001", "000002"):
        (devkit / "VOC2007" / "Annotations" / f"{name}.xml").rename(devkit / "VOC2007" / "Annotations" / f"img_{name}.xml")
        (devkit / "VOC2007" / "JPEGImages" / f"{name}.jpg").rename(devkit / "VOC2007" / "JPEGImages" / f"img_{name}.jpg")
    (main / "mine.txt").write_text("img_000001\nimg_000002\n")
    split = VOCDevkit(devkit, val_sets=[[2007, "mine"]]).open("val")
    assert [row["image_id"] for row in split.annotations()] == [1, 2]
    assert split.image_name(2) == "img_000002"
