"""How long COCO scoring takes: ``python benchmarks/scoring_speed.py [--images 5000] [--pycocotools]``.

Synthetic COCO-like val split: ``--images`` images of 640x480, ~7 ground-truth boxes each over
80 classes, ``--detections`` detections per image (jittered ground truth and random boxes).
Times building the ground truth from the split's rows, the evaluator's ``update`` (all images,
batches of 8), ``compute`` (COCO dicts + faster-coco-eval), writing the two json files, and with
``--pycocotools`` the same scoring by pycocotools' ``COCOeval`` over the written files, for comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import torch

from frcnn.evaluation.coco_format import write_json
from frcnn.evaluation.coco_metric import METRIC_KEYS, COCOEvaluator
from frcnn.evaluation.ground_truth import coco_ground_truth_from_rows

NUM_CLASSES = 81  # background + COCO's 80


def synthetic_batches(num_images: int, detections_per_image: int, batch_size: int = 8, seed: int = 0):
    """Yield (preds, rows) batches: the evaluator's input and the images' Hub-schema rows
    (without the image; categories 0-based)."""
    generator = torch.Generator().manual_seed(seed)
    height, width = 480, 640
    for start in range(0, num_images, batch_size):
        preds, rows = [], []
        for image_id in range(start, min(start + batch_size, num_images)):
            num_gts = int(torch.randint(0, 15, (1,), generator=generator))
            corners = torch.rand(num_gts, 2, generator=generator) * torch.tensor([width * 0.8, height * 0.8])
            sides = 4 + torch.rand(num_gts, 2, generator=generator) * torch.tensor([width * 0.2, height * 0.2]) * 4
            gt_boxes = torch.cat([corners, (corners + sides).minimum(torch.tensor([width, height]))], dim=1)
            gt_labels = torch.randint(1, NUM_CLASSES, (num_gts,), generator=generator)
            num_matched = min(num_gts * 3, detections_per_image)
            matched = torch.arange(num_matched) % max(num_gts, 1)
            jitter = 0.1 * torch.randn(num_matched, 4, generator=generator) * sides[matched].repeat(1, 2) if num_gts else None
            pred_boxes = torch.cat(
                [
                    gt_boxes[matched] + jitter if num_gts else torch.zeros(0, 4),
                    _random_boxes(detections_per_image - num_matched, height, width, generator),
                ]
            )
            pred_labels = torch.cat(
                [
                    gt_labels[matched] if num_gts else torch.zeros(0, dtype=torch.int64),
                    torch.randint(1, NUM_CLASSES, (detections_per_image - num_matched,), generator=generator),
                ]
            )
            preds.append({"boxes": pred_boxes, "scores": torch.rand(len(pred_boxes), generator=generator), "labels": pred_labels})
            rows.append(
                {
                    "image_id": image_id,
                    "width": width,
                    "height": height,
                    "objects": {"bbox": gt_boxes.tolist(), "category": (gt_labels - 1).tolist()},
                }
            )
        yield preds, rows


def _random_boxes(num_boxes: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    corners = torch.rand(num_boxes, 2, generator=generator) * torch.tensor([width * 0.9, height * 0.9])
    sides = 2 + torch.rand(num_boxes, 2, generator=generator) * torch.tensor([width * 0.4, height * 0.4])
    return torch.cat([corners, corners + sides], dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--detections", type=int, default=100, help="detections per image")
    parser.add_argument("--pycocotools", action="store_true", help="also time pycocotools COCOeval over the files")
    args = parser.parse_args()

    batches = list(synthetic_batches(args.images, args.detections))
    tic = time.perf_counter()
    ground_truth = coco_ground_truth_from_rows(
        (row for _, rows in batches for row in rows),
        class_names=[f"class{label}" for label in range(1, NUM_CLASSES)],
        category_ids=range(1, NUM_CLASSES),
    )
    timings = {"ground truth from rows": time.perf_counter() - tic}
    evaluator = COCOEvaluator(ground_truth=ground_truth)
    tic = time.perf_counter()
    for preds, rows in batches:
        evaluator.update(preds, [row["image_id"] for row in rows])
    timings["update (all batches)"] = time.perf_counter() - tic
    tic = time.perf_counter()
    metrics = evaluator.compute()
    timings["compute (faster-coco-eval)"] = time.perf_counter() - tic

    with tempfile.TemporaryDirectory() as folder:
        tic = time.perf_counter()
        write_json(evaluator.coco_ground_truth(), Path(folder) / "ground_truth.json")
        write_json(evaluator.coco_results(), Path(folder) / "detections.json")
        timings["build + write json files"] = time.perf_counter() - tic
        if args.pycocotools:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval

            tic = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                coco_gt = COCO(str(Path(folder) / "ground_truth.json"))
                coco_eval = COCOeval(coco_gt, coco_gt.loadRes(str(Path(folder) / "detections.json")), "bbox")
                coco_eval.evaluate()
                coco_eval.accumulate()
                coco_eval.summarize()
            timings["pycocotools COCOeval (load files + score)"] = time.perf_counter() - tic
            difference = max(abs(metrics[key].item() - value) for key, value in zip(METRIC_KEYS, coco_eval.stats))
            print(f"max |faster-coco-eval - pycocotools| over the 12 numbers: {difference:.2e}")

    print(f"{args.images} images, {args.detections} detections each, {torch.get_num_threads()} threads")
    for name, seconds in timings.items():
        print(f"  {name:<42} {seconds:7.2f} s")
    print(f"  AP = {metrics['map'].item():.4f}, AR100 = {metrics['mar_100'].item():.4f}")


if __name__ == "__main__":
    main()
