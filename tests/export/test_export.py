"""The exported ONNX file against the PyTorch model it came from (the oracle), in onnxruntime.

One export per module (the tiny checkpoint: R50-FPN, 128–160 px resize, 10 detections per
image at score threshold 0, so that an untrained model detects). Inputs up to 1333 px are
resized inside the file, so large inputs cost little here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from frcnn import Detector
from frcnn.export.runtime import ModelFileError, OnnxDetector

pytestmark = pytest.mark.slow  # one R50-FPN export (~30 s on 2 idle cores)
REPO = Path(__file__).resolve().parents[2]

# (height, width): odd, tiny, portrait, landscape, 1 px wide and high, up to 1333 px.
SIZES = [(64, 64), (97, 131), (13, 21), (300, 120), (90, 400), (1333, 800), (800, 1333), (50, 1), (1, 77), (255, 129), (721, 1279)]


@pytest.fixture(scope="module")
def exported(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("export") / "model.onnx"
    result = subprocess.run([sys.executable, str(REPO / "export.py"), f"ckpt={tiny_checkpoint}", f"output={output}"],
                            cwd=REPO, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Exported" in result.stdout and output.is_file()
    return output


@pytest.fixture(scope="module")
def runner(exported: Path) -> OnnxDetector:
    return OnnxDetector(exported, ["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def pytorch(tiny_checkpoint: Path) -> Detector:
    return Detector.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=3)


def _scenes(num_images: int, height: int, width: int, seed: int) -> np.ndarray:
    """``[B, 3, H, W]`` uint8: smooth colour ramps with a bright block (not noise: natural
    images change little under a resize's rounding)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    images = []
    for _ in range(num_images):
        base = rng.uniform(40, 200, 3)[:, None, None] + 30 * np.sin(x / max(width, 2) * rng.uniform(1, 6) + y / max(height, 2) * rng.uniform(1, 6))
        y0, x0 = int(rng.uniform(0, 0.5) * height), int(rng.uniform(0, 0.5) * width)
        base[:, y0 : y0 + max(1, height // 3), x0 : x0 + max(1, width // 3)] = rng.uniform(0, 255, 3)[:, None, None]
        images.append(np.clip(base, 0, 255).round().astype(np.uint8))
    return np.stack(images)


def _iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    from torchvision.ops import box_iou

    return box_iou(boxes1.double(), boxes2.double())


def unmatched(reference: list[dict], candidate: list[dict]) -> int:
    """How many of ``reference``'s detections have no detection in ``candidate`` (same image)
    of the same label with IoU >= 0.99 and |score difference| <= 1e-3."""
    missing = 0
    for ref, cand in zip(reference, candidate, strict=True):
        ref_boxes, cand_boxes = torch.as_tensor(ref["boxes"]), torch.as_tensor(cand["boxes"])
        if len(ref_boxes) == 0:
            continue
        if len(cand_boxes) == 0:
            missing += len(ref_boxes)
            continue
        iou = _iou(ref_boxes.reshape(-1, 4), cand_boxes.reshape(-1, 4))
        same_label = torch.as_tensor(ref["labels"])[:, None] == torch.as_tensor(cand["labels"])[None, :]
        close_score = (torch.as_tensor(ref["scores"])[:, None].double() - torch.as_tensor(cand["scores"])[None, :].double()).abs() <= 1e-3
        missing += int((~((iou >= 0.99) & same_label & close_score).any(dim=1)).sum())
    return missing


def pytorch_detections(detector: Detector, images: np.ndarray, resize: str = "torchvision") -> list[dict]:
    """The PyTorch model on ``images [B, 3, H, W]``, resized by torchvision's uint8 path (what
    predict.py does on this CPU) or by its float path (``"float"``: what torchvision does on a
    CPU without AVX2, or on a GPU: a rounding-sized change of the input)."""
    originals = [torch.from_numpy(image) for image in images]
    if resize == "torchvision":
        inputs = [detector.prepare(image) for image in originals]
    else:
        size = detector.prepare(originals[0]).shape[-2:]
        batch = F.interpolate(torch.from_numpy(images).float(), size=tuple(size), mode="bilinear", antialias=True)
        inputs = list(batch.round().clamp(0, 255).to(torch.uint8))
    results = detector.detect(inputs, torch.tensor([image.shape[-2:] for image in originals]))
    return [{"boxes": r.boxes, "scores": r.scores, "labels": r.labels} for r in results]


def _check_valid(result: dict, height: int, width: int, num_classes: int) -> None:
    boxes = result["boxes"]
    assert boxes.dtype == np.float32 and result["scores"].dtype == np.float32 and result["labels"].dtype == np.int64
    assert np.isfinite(boxes).all() and (boxes >= 0).all()
    assert (boxes[:, 2] <= width + 1e-3).all() and (boxes[:, 3] <= height + 1e-3).all()
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    assert ((result["labels"] >= 1) & (result["labels"] < num_classes)).all()
    assert (np.diff(result["scores"]) <= 0).all()  # best first


@pytest.mark.parametrize("num_images", [1, 3])
def test_onnx_equals_pytorch_across_sizes(runner, pytorch, num_images):
    """Every PyTorch detection is matched in the file's output, except as many as PyTorch
    itself loses under a rounding-sized change of its input (the floor, measured here); and
    given the same resize arithmetic as the file (torchvision's float path), all but 1 %."""
    total = floor_total = onnx_total = same_resize_total = 0
    for index, (height, width) in enumerate(SIZES):
        images = _scenes(num_images, height, width, seed=index)
        expected = pytorch_detections(pytorch, images)
        float_resized = pytorch_detections(pytorch, images, resize="float")
        floor = unmatched(expected, float_resized)
        got = runner.detect(list(images))
        for result in got:
            _check_valid(result, height, width, len(runner.class_names))
        missing = unmatched(expected, got)
        assert missing <= floor, f"{height}x{width}: {missing} PyTorch detections unmatched, PyTorch's own floor {floor}"
        total += sum(len(r["boxes"]) for r in expected)
        floor_total, onnx_total = floor_total + floor, onnx_total + missing
        same_resize_total += unmatched(float_resized, got)
    print(f"batch {num_images}: {total} detections, unmatched: onnx {onnx_total}, pytorch floor {floor_total}, "
          f"onnx vs pytorch with the float resize {same_resize_total}")  # fmt: skip
    assert total >= 10 * len(SIZES) * num_images  # every image detected (score threshold 0)
    assert same_resize_total <= total // 100


def test_blank_and_degenerate_images_give_valid_outputs(runner):
    for images in (np.zeros((2, 3, 70, 90), np.uint8), np.full((1, 3, 1, 1), 255, np.uint8), np.zeros((1, 3, 1, 400), np.uint8)):
        outputs = runner.run(images)
        assert set(np.unique(outputs["batch_index"])) <= set(range(len(images)))
        for slot in range(len(images)):
            mine = outputs["batch_index"] == slot
            _check_valid({key: value[mine] for key, value in outputs.items()}, *images.shape[-2:], len(runner.class_names))
    empty = runner.run(np.zeros((0, 3, 64, 64), np.uint8))
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)


def test_metadata_and_reader_errors(runner, pytorch, exported, tmp_path):
    assert runner.class_names == pytorch.class_names and runner.label_to_category_id == list(pytorch.label_to_category_id)
    assert runner.resize == {"mode": "keep_ratio", "min_size": 128, "max_size": 160, "square_size": 256}
    assert runner.settings["model"]["roi_heads"]["detections_per_img"] == 10
    with pytest.raises(ValueError, match="must be uint8"):
        runner.run(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        runner.run(np.zeros((1, 4, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        runner([np.zeros((8, 8), np.uint8)])

    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(exported.read_bytes()[:5000])
    with pytest.raises(ModelFileError, match="not a readable ONNX model"):
        OnnxDetector(corrupt)
    import onnx

    model = onnx.load(exported)
    for prop in model.metadata_props:
        if prop.key == "format_version":
            prop.value = "0"
    old = tmp_path / "old.onnx"
    onnx.save(model, old)
    with pytest.raises(ModelFileError, match="format version 0"):
        OnnxDetector(old)


def test_pure_onnxruntime_without_torch(exported, tmp_path):
    """The reader imports no torch; its output equals a plain onnxruntime session's."""
    code = f"""
import sys, numpy as np, onnxruntime as ort
from frcnn.export.runtime import OnnxDetector
image = np.random.default_rng(0).integers(0, 255, (60, 90, 3), dtype=np.uint8)
result = OnnxDetector({str(exported)!r}, ["CPUExecutionProvider"])(image)[0]
session = ort.InferenceSession({str(exported)!r}, providers=["CPUExecutionProvider"])
boxes, scores, labels, index = session.run(None, {{"images": image.transpose(2, 0, 1)[None].copy()}})
assert np.array_equal(result["boxes"], boxes) and np.array_equal(result["labels"], labels)
assert "torch" not in sys.modules, "the reader imported torch"
print(len(boxes))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout) > 0


def test_predict_backend_onnxruntime_equals_pytorch(exported, tiny_checkpoint, pytorch, tmp_path):
    """predict.py's predictions.json from the file equals the checkpoint's within the tolerance
    and the floor. One image per batch: the eager backend pads a batch of mixed sizes to its
    largest image, which changes its detections; the file runs each size by itself."""
    folder = tmp_path / "images"
    folder.mkdir()
    scenes = [_scenes(1, height, width, seed=50 + index) for index, (height, width) in enumerate([(120, 90), (64, 200), (333, 333), (90, 120)])]
    for index, scene in enumerate(scenes):
        Image.fromarray(scene[0].transpose(1, 2, 0)).save(folder / f"{index}.png")
    predictions = {}
    for backend, ckpt in (("pytorch", tiny_checkpoint), ("onnxruntime", exported)):
        out = tmp_path / backend
        result = subprocess.run(
            [sys.executable, str(REPO / "predict.py"), f"backend={backend}", f"ckpt={ckpt}", f"input={folder}",
             f"output={out}", "device=cpu", "score_thresh=0", "batch_size=1", "num_workers=0", "pictures=false"],
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        predictions[backend] = json.loads((out / "predictions.json").read_text())["images"]
    eager, from_file = predictions["pytorch"], predictions["onnxruntime"]
    assert [entry["file"] for entry in eager] == [entry["file"] for entry in from_file]
    assert [(e["width"], e["height"]) for e in eager] == [(e["width"], e["height"]) for e in from_file]
    assert sum(len(entry["scores"]) for entry in eager) == 40
    arrays = [[{"boxes": np.array(e["boxes"]).reshape(-1, 4), "scores": np.array(e["scores"]), "labels": np.array(e["labels"])}
               for e in entries] for entries in (eager, from_file)]  # fmt: skip
    # The floor as predictions.json holds it: boxes rounded to 0.01 px (a 1-px box then moves
    # by up to 2 % IoU), scores to 1e-4.
    float_resized = [pytorch_detections(pytorch, scene, resize="float")[0] for scene in scenes]
    for result in float_resized:
        result["boxes"], result["scores"] = result["boxes"].double().round(decimals=2), result["scores"].double().round(decimals=4)
    floor = unmatched(arrays[0], float_resized)
    missing = unmatched(arrays[0], arrays[1])
    print(f"predict.py: 40 PyTorch detections, unmatched in the file's: {missing}, PyTorch's floor {floor}")
    assert missing <= floor


def test_bad_inputs_give_one_line(exported, tmp_path):
    not_ckpt = tmp_path / "notes.ckpt"
    not_ckpt.write_text("not a checkpoint")
    result = subprocess.run([sys.executable, str(REPO / "export.py"), f"ckpt={not_ckpt}", f"output={tmp_path / 'm.onnx'}"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0 and "not a checkpoint of this app" in result.stderr
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = subprocess.run([sys.executable, str(REPO / "export.py"), f"ckpt={not_ckpt}", f"output={blocker / 'm.onnx'}"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 1 and "cannot write output=" in result.stderr and result.stderr.strip().count("\n") == 0
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "black.png")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07garbage" * 100)
    result = subprocess.run([sys.executable, str(REPO / "predict.py"), "backend=onnxruntime", f"ckpt={garbage}",
                             f"input={tmp_path}", f"output={tmp_path / 'out'}"], cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 1 and "not a readable ONNX model" in result.stderr and result.stderr.strip().count("\n") == 0
