"""A COCO-format folder (images/ + instances.json) yields the same sample contract."""

import json

import torch
from PIL import Image

from frcnn.data.datamodule import DetectionDataModule
from frcnn.data.sources.coco_folder import CocoFolder


def write_coco_folder(root):
    """3 images; categories 17 (cat) and 5 (airplane); one crowd box; image 3 without objects."""
    split_dir = root / "train"
    (split_dir / "images").mkdir(parents=True)
    sizes = {1: (64, 48), 2: (40, 80), 3: (50, 50)}
    for image_id, (width, height) in sizes.items():
        Image.new("L", (width, height), 128).save(split_dir / "images" / f"{image_id:06d}.jpg")
    annotations = [
        {"id": 10, "image_id": 1, "category_id": 17, "bbox": [4, 6, 20, 10], "iscrowd": 0, "area": 200},
        {"id": 11, "image_id": 1, "category_id": 5, "bbox": [30, 2, 10, 40], "iscrowd": 0, "area": 400},
        {"id": 12, "image_id": 2, "category_id": 5, "bbox": [0, 0, 40, 80], "iscrowd": 1, "area": 3200},
        {"id": 13, "image_id": 2, "category_id": 17, "bbox": [5, 5, 10, 10], "iscrowd": 0, "area": 100},
    ]
    coco = {
        "images": [{"id": i, "file_name": f"{i:06d}.jpg", "width": w, "height": h} for i, (w, h) in sizes.items()],
        "annotations": annotations,
        "categories": [{"id": 17, "name": "cat"}, {"id": 5, "name": "airplane"}],
    }
    (split_dir / "instances.json").write_text(json.dumps(coco))
    (root / "val").symlink_to(split_dir)


def test_coco_folder_maps_categories_and_boxes(tmp_path):
    write_coco_folder(tmp_path)
    dm = DetectionDataModule(CocoFolder, path=str(tmp_path), num_workers=0, batch_size=2, resize="none")
    assert dm.num_classes == 3
    assert dm.class_names == ["background", "airplane", "cat"]
    assert dm.label_to_category_id == [0, 5, 17]
    dm.setup("fit")
    targets = {int(t["image_id"]): t for _, batch in dm.val_dataloader() for t in batch}
    assert sorted(targets) == [1, 2, 3]
    torch.testing.assert_close(targets[1]["boxes"], torch.tensor([[4.0, 6.0, 24.0, 16.0], [30.0, 2.0, 40.0, 42.0]]))
    assert targets[1]["labels"].tolist() == [2, 1]
    assert targets[2]["labels"].tolist() == [2]  # the crowd box is excluded
    assert targets[3]["boxes"].shape == (0, 4)
    assert targets[2]["orig_size"].tolist() == [80, 40]
    train_ids = sorted(int(t["image_id"]) for images, batch in dm.train_dataloader() for t in batch)
    assert train_ids == [1, 2]  # image 3 has no box
    images, _ = next(iter(dm.val_dataloader()))
    assert all(image.dtype == torch.uint8 and image.shape[0] == 3 for image in images)
