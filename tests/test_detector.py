"""`frcnn.Detector`: the same detections as evaluate.py's path and `trainer.predict`, every
input kind, a converted torchvision checkpoint with COCO's names, pictures scaled to the image."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pytest
import torch
from PIL import Image

from frcnn import Detector
from frcnn.convert import COCO_CATEGORY_IDS
from frcnn.convert import main as convert_main
from frcnn.data.coco_classes import COCO_CLASSES
from frcnn.data.image_files import ImageReadError, load_image
from frcnn.data.sources.shapes import make_row
from frcnn.detector import Detections, build_model
from frcnn.checkpoint import load_checkpoint
from frcnn.evaluation.inference import in_original_pixels, predict
from frcnn.evaluation.visualize import class_color


@pytest.fixture(scope="module")
def detector(tiny_checkpoint: Path) -> Detector:
    return Detector.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=2)


@dataclass
class EvaluatePath:
    datamodule: Any
    images: list[torch.Tensor]  # as the model saw them (resized by the data module)
    targets: list[dict]
    detections: list[dict]  # in the images' pixels
    original_detections: list[dict]  # in the stored images' pixels


@pytest.fixture(scope="module")
def evaluate_path(tiny_checkpoint: Path) -> EvaluatePath:
    """evaluate.py's path: its model, the checkpoint's val loader, ``predict``, ``in_original_pixels``."""
    checkpoint = load_checkpoint(tiny_checkpoint)
    datamodule = hydra.utils.instantiate(checkpoint.cfg["data"], _convert_="all")
    datamodule.setup("validate")
    model = build_model(checkpoint)
    path = EvaluatePath(datamodule, [], [], [], [])
    for images, targets, detections in predict(model, datamodule.val_dataloader(), torch.device("cpu")):
        path.images += images
        path.targets += targets
        path.detections += detections
        path.original_detections += in_original_pixels(detections, targets)
    return path


def _val_image(datamodule, image_id: int) -> bytes:
    """The stored bytes of a shapes val image (ids are 1_000_001, 1_000_002, ...)."""
    row = make_row(datamodule.source.options.get("seed", 0), "val", image_id - 1_000_001)
    assert row["image_id"] == image_id
    return row["image"]["bytes"]


def test_detector_gives_evaluate_detections(detector, evaluate_path, tmp_path):
    detections, targets, datamodule = evaluate_path.original_detections, evaluate_path.targets, evaluate_path.datamodule
    assert sum(len(d["boxes"]) for d in detections) > 0
    paths = []
    for target in targets:
        path = tmp_path / f"{int(target['image_id'])}.jpg"
        path.write_bytes(_val_image(datamodule, int(target["image_id"])))
        paths.append(path)
    assert detector.batch_size == datamodule.batch_size  # same batches: same padding
    results = detector(paths)
    for result, expected, target in zip(results, detections, targets):
        assert result.image_size == tuple(target["orig_size"].tolist())
        torch.testing.assert_close(result.boxes, expected["boxes"], rtol=0, atol=0)
        torch.testing.assert_close(result.scores, expected["scores"], rtol=0, atol=0)
        assert torch.equal(result.labels, expected["labels"])
        assert result.names == [detector.class_names[label] for label in expected["labels"].tolist()]


def test_trainer_predict_gives_evaluate_detections(tiny_checkpoint, evaluate_path):
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    from frcnn.data.collate import collate_detection
    from frcnn.lit import DetectionModule

    detections, targets, datamodule = evaluate_path.original_detections, evaluate_path.targets, evaluate_path.datamodule
    module = DetectionModule.from_checkpoint(tiny_checkpoint)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    # A plain DataLoader over the val stream: Lightning's predict loop re-creates a loader
    # with its own sampler, which StreamLoader (a stand-in sampler for set_epoch) refuses.
    loader = DataLoader(datamodule.val_dataset, batch_size=datamodule.batch_size, collate_fn=collate_detection)
    batches = trainer.predict(module, dataloaders=loader)
    outputs = [output for batch in batches for output in batch]
    assert len(outputs) == len(detections)
    for output, expected, target in zip(outputs, detections, targets):
        assert int(output["image_id"]) == int(target["image_id"])
        torch.testing.assert_close(output["boxes"], expected["boxes"], rtol=0, atol=0)
        torch.testing.assert_close(output["scores"], expected["scores"], rtol=0, atol=0)

    # Batches that are lists of images: boxes in those images' pixels.
    loader = DataLoader(evaluate_path.images, batch_size=datamodule.batch_size, collate_fn=list)
    outputs = [output for batch in trainer.predict(module, loader) for output in batch]
    for output, expected in zip(outputs, evaluate_path.detections, strict=True):
        torch.testing.assert_close(output["boxes"], expected["boxes"], rtol=0, atol=0)


def test_every_input_kind_gives_the_same_detections(detector, evaluate_path, tmp_path):
    encoded = _val_image(evaluate_path.datamodule, int(evaluate_path.targets[0]["image_id"]))
    path = tmp_path / "image.jpg"
    path.write_bytes(encoded)
    array = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1)
    inputs = [path, str(path), Image.open(path), tensor, tensor.float() / 255, array]
    single = Detector(detector.model, detector.class_names, detector.prepare, device="cpu", batch_size=1)
    results = single(inputs)
    assert len(results) == len(inputs) and len(results[0]) > 0
    for result in results[1:]:
        torch.testing.assert_close(result.boxes, results[0].boxes, rtol=0, atol=0)
        torch.testing.assert_close(result.scores, results[0].scores, rtol=0, atol=0)
    assert single(path)[0].names == results[0].names  # one image, not in a list


def test_draw_returns_the_input_kind_with_labels_scaled_to_the_image(detector, tmp_path):
    small, large = (np.zeros((h, w, 3), np.uint8) for h, w in ((96, 128), (3000, 4000)))
    results = []
    for array in (small, large):
        height, width = array.shape[:2]
        box = torch.tensor([[width * 0.25, height * 0.5, width * 0.75, height * 0.9]])
        results.append(Detections(box, torch.tensor([0.9]), torch.tensor([3]), ["c"], (height, width)))
    tabs = []
    for array, result in zip((small, large), results):
        picture = detector.draw(torch.from_numpy(array).permute(2, 0, 1), result)
        assert isinstance(picture, torch.Tensor) and picture.shape == (3, *array.shape[:2])
        color = torch.tensor(class_color(3), dtype=torch.uint8)[:, None, None]
        rows = (picture == color).all(dim=0).any(dim=1).nonzero().flatten()
        box_top = int(result.boxes[0, 1])
        tabs.append(int((rows < box_top).sum()))  # rows of the label tab, above the box
    # drawing_scale: font 11 px on the small image, 87 px on the large one (sqrt(H * W) / 40).
    assert tabs[0] >= 10 and tabs[1] >= 8 * tabs[0] and tabs[1] / 3000 > 0.025
    path = tmp_path / "small.png"
    Image.fromarray(small).save(path)
    pil_picture = detector.draw(path, results[0])
    assert isinstance(pil_picture, Image.Image) and pil_picture.size == (128, 96)


def test_converted_torchvision_checkpoint_predicts_coco_names(tmp_path):
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    torch.manual_seed(0)
    state = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    dog = 18  # COCO category id of "dog": every box of this model is a dog
    state["roi_heads.box_predictor.cls_score.bias"][dog] += 20.0
    torch.save(state, tmp_path / "torchvision.pth")
    convert_main(["--coco-to-80", str(tmp_path / "torchvision.pth"), str(tmp_path / "frcnn.pt")])

    detector = Detector.from_checkpoint(tmp_path / "frcnn.pt", device="cpu", min_size=128, max_size=160)
    assert detector.class_names == ["background", *COCO_CLASSES]
    image = np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    result = detector(image)[0]
    assert len(result) > 0 and set(result.names) == {"dog"}
    label = result.labels[0].item()
    assert COCO_CATEGORY_IDS[label - 1] == dog and detector.label_to_category_id[label] == dog
    assert (result.boxes >= 0).all() and (result.boxes[:, [0, 2]] <= 200).all() and (result.boxes[:, [1, 3]] <= 120).all()


def test_to_original_pixels_one_image_and_a_batch():
    from frcnn.ops.rescale import to_original_pixels

    boxes = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    # (H, W) 50 x 100 -> 100 x 400: x * 4, y * 2, by hand.
    expected = torch.tensor([[40.0, 40.0, 120.0, 80.0]])
    assert torch.equal(to_original_pixels(boxes, torch.tensor([50, 100]), torch.tensor([100, 400])), expected)
    assert torch.equal(to_original_pixels(boxes, (50, 100), [100, 400]), expected)
    batch = torch.stack([boxes, boxes])  # [B=2, K=1, 4]; the second image is not resized
    mapped = to_original_pixels(batch, torch.tensor([[50, 100], [64, 64]]), torch.tensor([[100, 400], [64, 64]]))
    assert torch.equal(mapped, torch.stack([expected, boxes]))


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (torch.full((3, 8, 8), 200.0), "a float image must hold values in 0-1, got 200..200: divide a 0-255 image by 255"),
        (torch.full((3, 8, 8), float("nan")), "a float image must hold values in 0-1"),
        (np.full((8, 8, 3), 255.0), "a float image must hold values in 0-1, got 255..255"),
        (torch.zeros(2, 8, 8, dtype=torch.uint8), "a tensor image must be [3, H, W], [1, H, W] or [H, W], got shape (2, 8, 8)"),
        (torch.zeros(3, 8, 8, dtype=torch.int64), "a tensor image must be uint8 (0-255) or float (0-1), got torch.int64"),
        (np.zeros((8, 8, 2), dtype=np.uint8), "a NumPy image must be [H, W] or [H, W, 1|3|4], got shape (8, 8, 2)"),
        (np.zeros((8, 8, 3), dtype=np.int64), "is not one PIL reads: pass uint8 (0-255) or float (0-1)"),
    ],
)
def test_inputs_it_would_get_wrong_are_refused_in_one_line(image, message):
    with pytest.raises(ImageReadError, match=re.escape(message)) as caught:
        load_image(image)
    assert "\n" not in str(caught.value)


def test_float_inputs_in_0_1_are_the_uint8_image():
    pixels = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    assert torch.equal(load_image(pixels.float() / 255), pixels)
    assert torch.equal(load_image(pixels.permute(1, 2, 0).numpy() / 255.0), pixels)


def test_an_empty_list_is_refused(detector):
    with pytest.raises(ImageReadError, match="no images given"):
        detector([])
