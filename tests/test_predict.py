"""predict.py end to end: odd images in a folder, a list file with ids, proposals, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from frcnn import Detector

REPO = Path(__file__).resolve().parents[1]


def run_predict(*overrides: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, str(REPO / "predict.py"), "device=cpu", *overrides],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _scene(height: int, width: int, seed: int) -> np.ndarray:
    """An RGB picture with a few filled shapes: (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(60, 120, (height, width, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    draw.rectangle((width * 0.1, height * 0.2, width * 0.5, height * 0.6), fill=(40, 80, 220))
    draw.ellipse((width * 0.55, height * 0.5, width * 0.9, height * 0.95), fill=(245, 150, 20))
    return np.asarray(image)


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory) -> Path:
    """7 files: EXIF-rotated JPEG, grayscale / RGBA / 16-bit PNGs, a large JPEG, a CMYK JPEG in a
    subfolder, a corrupt JPEG; and a text file that is not an image."""
    folder = tmp_path_factory.mktemp("odd")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 120 x 80 (W x H), shown rotated 90° clockwise: 80 x 120
    Image.fromarray(_scene(80, 120, 0)).save(folder / "exif_rotated.jpg", exif=exif, quality=95)
    Image.fromarray(_scene(100, 80, 1)).convert("L").save(folder / "gray.png")
    rgba = Image.fromarray(_scene(70, 90, 2)).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "rgba.png")
    deep = (_scene(80, 100, 3)[..., 0].astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(deep).save(folder / "deep16.png")
    Image.fromarray(_scene(1800, 2400, 4)).save(folder / "large.jpg", quality=90)
    (folder / "sub").mkdir()
    Image.fromarray(_scene(90, 90, 5)).convert("CMYK").save(folder / "sub" / "cmyk.jpg")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG" * 10)
    (folder / "notes.txt").write_text("not an image")
    return folder


def _shown_size(path: Path) -> tuple[int, int]:
    from PIL import ImageOps

    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).size  # (W, H) as a viewer shows it


def test_folder_of_odd_images(tiny_checkpoint, odd_folder, tmp_path):
    out = tmp_path / "out"
    result = run_predict(f"ckpt={tiny_checkpoint}", f"input={odd_folder}", f"output={out}",
                         "score_thresh=0", "batch_size=2", "num_workers=1")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = json.loads((out / "predictions.json").read_text())
    files = sorted(Path(entry["file"]).name for entry in predictions["images"])
    assert files == ["cmyk.jpg", "deep16.png", "exif_rotated.jpg", "gray.png", "large.jpg", "rgba.png"]
    assert [Path(s["file"]).name for s in predictions["skipped"]] == ["corrupt.jpg"]
    assert f"skipped {odd_folder / 'corrupt.jpg'}" in result.stderr
    assert "skipped 1 of 7 files" in result.stdout

    pictures = sorted(p.relative_to(out / "pictures").as_posix() for p in (out / "pictures").rglob("*.jpg"))
    assert pictures == ["deep16.jpg", "exif_rotated.jpg", "gray.jpg", "large.jpg", "rgba.jpg", "sub/cmyk.jpg"]
    for entry in predictions["images"]:
        path = Path(entry["file"])
        width, height = _shown_size(path)
        assert (entry["width"], entry["height"]) == (width, height)
        picture = out / "pictures" / path.relative_to(odd_folder).with_suffix(".jpg")
        assert Image.open(picture).size == (width, height)
        boxes = torch.tensor(entry["boxes"]).reshape(-1, 4)
        assert len(boxes) > 0 and len(entry["scores"]) == len(entry["labels"]) == len(entry["names"]) == len(boxes)
        assert (boxes >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    large = next(entry for entry in predictions["images"] if entry["file"].endswith("large.jpg"))
    assert torch.tensor(large["boxes"]).max() > 400  # mapped back from the 128-px model input
    assert next(e for e in predictions["images"] if "exif" in e["file"])["width"] == 80


def test_exif_rotated_boxes_are_in_the_shown_orientation(tiny_checkpoint, odd_folder):
    detector = Detector.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=1)
    stored = np.asarray(Image.open(odd_folder / "exif_rotated.jpg").convert("RGB"))
    shown = np.ascontiguousarray(np.rot90(stored, k=-1))  # orientation 6: 90° clockwise
    from_file, from_shown_pixels = detector([odd_folder / "exif_rotated.jpg", shown])
    assert from_file.image_size == (120, 80) and len(from_file) > 0
    torch.testing.assert_close(from_file.boxes, from_shown_pixels.boxes, rtol=0, atol=0)
    torch.testing.assert_close(from_file.scores, from_shown_pixels.scores, rtol=0, atol=0)


def test_list_file_with_ids_writes_coco_results(tiny_checkpoint, tmp_path):
    Image.fromarray(_scene(96, 128, 6)).save(tmp_path / "street.jpg")
    Image.fromarray(_scene(100, 100, 7)).save(tmp_path / "000000000042.png")
    Image.fromarray(_scene(64, 64, 8)).save(tmp_path / "no_id.png")
    listing = tmp_path / "images.txt"
    listing.write_text("# path [image_id]\nstreet.jpg 7\n000000000042.png\nno_id.png\nmissing.jpg 9\n")
    detector = Detector.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=1)
    expected = {7: detector(tmp_path / "street.jpg")[0], 42: detector(tmp_path / "000000000042.png")[0]}
    scores = expected[7].scores.sort().values
    score_thresh = float(scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2  # half of street's boxes

    out = tmp_path / "out"
    result = run_predict(f"ckpt={tiny_checkpoint}", f"input={listing}", f"output={out}", f"score_thresh={score_thresh}",
                         "batch_size=1", "num_workers=0", "pictures=false")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "missing.jpg: file not found" in result.stderr and "skipped 1 of 4 files" in result.stdout
    predictions = json.loads((out / "predictions.json").read_text())
    assert [entry["image_id"] for entry in predictions["images"]] == [7, 42, None]
    assert not (out / "pictures").exists()

    coco = json.loads((out / "coco_results.json").read_text())
    for image_id, detections in expected.items():
        entries = [entry for entry in coco if entry["image_id"] == image_id]
        assert len(entries) == len(detections) > 0  # every detection, not only those >= score_thresh
        xywh = torch.tensor([entry["bbox"] for entry in entries], dtype=torch.float64)
        xyxy = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
        # Another process, other thread counts: float32 sums in another order (~1e-6 relative).
        torch.testing.assert_close(xyxy, detections.boxes.double(), rtol=1e-5, atol=1e-3)
        ids = [detector.label_to_category_id[label] for label in detections.labels.tolist()]
        assert [entry["category_id"] for entry in entries] == ids
        shown = next(entry for entry in predictions["images"] if entry["image_id"] == image_id)
        kept = detections.above(score_thresh)
        assert shown["names"] == kept.names and len(shown["boxes"]) == len(kept)
    assert 0 < len(next(e for e in predictions["images"] if e["image_id"] == 7)["scores"]) < len(expected[7])


def test_proposals_are_drawn_and_listed(tiny_checkpoint, tmp_path):
    Image.fromarray(_scene(90, 150, 9)).save(tmp_path / "scene.png")
    out = tmp_path / "out"
    result = run_predict(f"ckpt={tiny_checkpoint}", f"input={tmp_path / '*.png'}", f"output={out}",
                         "proposals=true", "num_proposals=20", "picture_format=png", "num_workers=0")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (entry,) = json.loads((out / "predictions.json").read_text())["images"]
    proposals = torch.tensor(entry["proposals"])
    assert proposals.shape == (20, 4)
    assert (proposals >= 0).all() and (proposals[:, 2] <= 150).all() and (proposals[:, 3] <= 90).all()
    assert Image.open(out / "pictures" / "scene.png").size == (150, 90)


def test_bad_input_gives_one_line(tiny_checkpoint, tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    cases = {
        (f"ckpt={tiny_checkpoint}", f"input={tmp_path / 'nothing_*.jpg'}"): "matches no image",
        (f"ckpt={tmp_path / 'missing.ckpt'}", f"input={tmp_path}"): "checkpoint not found",
        (f"ckpt={foreign}", f"input={tmp_path}"): "not of frcnn's FasterRCNN",
    }
    (tmp_path / "one.png").write_bytes(b"")  # something for input= to match in the checkpoint cases
    for overrides, message in cases.items():
        result = run_predict(*overrides, f"output={tmp_path / 'out'}")
        assert result.returncode == 1
        assert result.stderr.strip().count("\n") == 0 and message in result.stderr, result.stderr
        assert result.stderr.startswith("predict.py: ")
