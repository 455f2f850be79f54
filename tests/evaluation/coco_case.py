"""A hand-built COCO evaluation case (detections + Hub-schema rows) and the pycocotools oracle,
shared by the evaluation tests."""

import contextlib
import io
import json

import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from frcnn.evaluation import COCOEvaluator, coco_ground_truth_from_rows

CLASS_NAMES = ["background", "circle", "square", "triangle"]
LABEL_TO_CATEGORY_ID = [0, 1, 3, 7]  # non-contiguous ids, as COCO's


def _jitter(gt_boxes: torch.Tensor, generator: torch.Generator, scale: float) -> torch.Tensor:
    sizes = (gt_boxes[:, 2:] - gt_boxes[:, :2]).repeat(1, 2)
    return gt_boxes + scale * sizes * torch.randn(gt_boxes.shape, generator=generator)


def _random_boxes(num_boxes: int, height: int, width: int, side: tuple[float, float], generator) -> torch.Tensor:
    sides = side[0] + (side[1] - side[0]) * torch.rand(num_boxes, 2, generator=generator)
    corners = torch.rand(num_boxes, 2, generator=generator) * (torch.tensor([width, height]) - sides)
    return torch.cat([corners, corners + sides], dim=1)


def _image(image_id, height, width, gt_boxes, gt_labels, pred_boxes, pred_labels, generator, **extra):
    """(prediction, Hub-schema row without the image); ``extra``: more ``objects`` lists."""
    row = {
        "image_id": image_id,
        "width": width,
        "height": height,
        "objects": {
            "bbox": gt_boxes.float().tolist(),
            "category": (torch.as_tensor(gt_labels, dtype=torch.int64) - 1).tolist(),
            **{name: torch.as_tensor(values).tolist() for name, values in extra.items()},
        },
    }
    pred = {
        "boxes": pred_boxes.float(),
        "scores": torch.rand(len(pred_boxes), generator=generator),
        "labels": torch.as_tensor(pred_labels, dtype=torch.int64),
    }
    return pred, row


def hand_built_case() -> tuple[list[dict], list[dict]]:
    """(preds, rows) of eight images with the awkward cases named in the comment of each block;
    rows are Hub-schema rows without the image (categories 0-based: label - 1)."""
    generator = torch.Generator().manual_seed(0)
    preds, rows = [], []

    def add(pred_row):
        preds.append(pred_row[0])
        rows.append(pred_row[1])

    # Ordinary images: small, medium and large boxes of all classes, jittered
    # detections, a few wrong labels and a few false positives.
    for image_id in (139, 285, 632):
        gt_boxes = torch.cat(
            [_random_boxes(3, 480, 640, side, generator) for side in ((8, 30), (35, 90), (100, 400))]
        )
        gt_labels = torch.randint(1, 4, (len(gt_boxes),), generator=generator)
        pred_boxes = torch.cat([_jitter(gt_boxes, generator, 0.08), _random_boxes(4, 480, 640, (10, 200), generator)])
        pred_labels = torch.cat([gt_labels, torch.randint(1, 4, (4,), generator=generator)])
        pred_labels[0] = pred_labels[0] % 3 + 1
        add(_image(image_id, 480, 640, gt_boxes, gt_labels, pred_boxes, pred_labels, generator))
    # An empty image: no ground truth, no detections.
    add(_image(724, 300, 400, torch.zeros(0, 4), [], torch.zeros(0, 4), [], generator))
    # Only false positives.
    add(_image(776, 300, 400, torch.zeros(0, 4), [], _random_boxes(5, 300, 400, (5, 150), generator), [1, 2, 3, 1, 2], generator))
    # Ground truth nobody found.
    add(_image(785, 512, 512, _random_boxes(2, 512, 512, (20, 200), generator), [2, 3], torch.zeros(0, 4), [], generator))
    # 150 detections of one class over 10 boxes: maxDets=100 and AR1/AR10 cut them.
    gt_boxes = _random_boxes(10, 600, 800, (10, 300), generator)
    pred_boxes = torch.cat([_jitter(gt_boxes.repeat(10, 1), generator, 0.15), _random_boxes(50, 600, 800, (5, 300), generator)])
    add(_image(802, 600, 800, gt_boxes, [1] * 10, pred_boxes, [1] * 150, generator))
    # A crowd box (its matches are ignored) and source-given areas (COCO's mask areas).
    gt_boxes = _random_boxes(3, 400, 400, (30, 200), generator)
    extra = {"iscrowd": torch.tensor([0, 1, 0]), "area": (gt_boxes[:, 2:] - gt_boxes[:, :2]).prod(1) * 0.6}
    pred_boxes = torch.cat([_jitter(gt_boxes, generator, 0.05), _random_boxes(2, 400, 400, (30, 200), generator)])
    add(_image(872, 400, 400, gt_boxes, [3, 3, 2], pred_boxes, [3, 3, 2, 3, 1], generator, **extra))
    return preds, rows


def hand_built_evaluator(class_metrics: bool = False, class_names=CLASS_NAMES, **kwargs) -> COCOEvaluator:
    """A COCOEvaluator whose ground truth is the hand-built case's rows; no update yet."""
    _, rows = hand_built_case()
    category_ids = [*LABEL_TO_CATEGORY_ID[1:], *range(100, 100 + len(class_names) - len(LABEL_TO_CATEGORY_ID))]
    ground_truth = coco_ground_truth_from_rows(rows, class_names[1:], category_ids)
    return COCOEvaluator([0, *category_ids], class_metrics=class_metrics, ground_truth=ground_truth, **kwargs)


def image_ids(rows: list[dict]) -> list[int]:
    return [row["image_id"] for row in rows]


def pycocotools_eval(ground_truth_file, detections_file) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(ground_truth_file))
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(str(detections_file)), iouType="bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval


# A COCO folder with every awkward case of the official protocol. Category ids are not
# contiguous and listed out of order (one, donut, has no annotation); `area` (a mask area)
# puts boxes in another small/medium/large range than their box area; crowds (one with a real
# box inside it); boxes partly outside their image; an empty image. Boxes are [x, y, w, h].
FOLDER_CATEGORIES = [
    {"id": 42, "name": "kite"}, {"id": 5, "name": "airplane"}, {"id": 17, "name": "cat"}, {"id": 60, "name": "donut"}
]  # fmt: skip
FOLDER_IMAGES = {42: (640, 480), 7: (320, 240), 1001: (200, 200), 9: (500, 400)}  # id: (width, height)
FOLDER_ANNOTATIONS = [  # (image_id, category_id, bbox, area, iscrowd)
    (42, 17, [50.5, 60.25, 120, 90], 3000.5, 0),  # box area 10800 (large), area medium
    (42, 5, [300, 200, 40, 40], 700.0, 0),  # box medium, area small
    (42, 42, [600, 100, 80, 50], 3500.0, 0),  # partly outside (x + w = 680 > 640)
    (42, 17, [200, 250, 300, 200], 40000.0, 1),  # crowd
    (7, 5, [10, 10, 25, 20], 1500.0, 0),  # box small, area medium
    (7, 42, [100, 50, 150, 150], 22000.0, 0),
    (7, 17, [20, 150, 30, 30], 600.0, 0),
    (9, 42, [0, 0, 300, 200], 45000.0, 0),
    (9, 17, [250, 150, 240, 240], 30000.0, 1),  # crowd with a real cat inside it
    (9, 17, [260, 160, 60, 60], 2000.0, 0),
    (9, 5, [-5, 350, 40, 60], 1800.0, 0),  # partly outside (x < 0, y + h = 410 > 400)
]
# Detections in the dataset's ids: (image_id, category_id, [x, y, w, h]).
PLANTED = [
    (42, 17, [52, 58, 118, 95]), (42, 17, [56, 66, 100, 80]), (42, 5, [303, 198, 38, 44]),
    (42, 42, [598, 102, 42, 48]),  # the in-image part of the box partly outside
    (42, 17, [210, 260, 100, 80]), (42, 17, [320, 300, 150, 140]), (42, 17, [205, 255, 290, 190]),  # on the crowd
    (42, 5, [220, 270, 120, 100]), (42, 60, [10, 300, 60, 60]),
    (7, 5, [11, 9, 26, 22]), (7, 42, [105, 45, 140, 160]), (7, 17, [22, 148, 30, 33]), (7, 5, [100, 50, 150, 150]),
    (1001, 42, [20, 20, 80, 80]),
    (9, 42, [5, 3, 290, 205]), (9, 17, [262, 163, 58, 57]), (9, 17, [330, 250, 100, 100]), (9, 17, [400, 300, 80, 80]),
    (9, 5, [0, 352, 35, 48]), (9, 42, [300, 10, 150, 100]),
]  # fmt: skip


def write_coco_folder(root) -> None:
    """``root/val`` (and ``root/train``, the same) as a COCO folder of the case above."""
    from PIL import Image

    split_dir = root / "val"
    (split_dir / "images").mkdir(parents=True)
    for image_id, size in FOLDER_IMAGES.items():
        Image.new("RGB", size, (120, 110, 100)).save(split_dir / "images" / f"{image_id:012d}.jpg")
    coco = {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "width": w, "height": h} for i, (w, h) in FOLDER_IMAGES.items()],
        "annotations": [
            {"id": 1000 + n, "image_id": i, "category_id": c, "bbox": bbox, "area": area, "iscrowd": crowd, "segmentation": []}
            for n, (i, c, bbox, area, crowd) in enumerate(FOLDER_ANNOTATIONS)
        ],
        "categories": FOLDER_CATEGORIES,
    }
    (split_dir / "instances.json").write_text(json.dumps(coco))
    (root / "train").symlink_to(split_dir)


def planted_predictions(label_to_category_id: list[int], seed: int = 0) -> tuple[list[dict], list[int]]:
    """(preds, image ids): ``PLANTED`` as one prediction per image of the folder (image-id order),
    boxes xyxy, our labels, distinct random scores."""
    generator = torch.Generator().manual_seed(seed)
    image_ids = sorted(FOLDER_IMAGES)
    preds = []
    for image_id in image_ids:
        planted = [(c, box) for i, c, box in PLANTED if i == image_id]
        xywh = torch.tensor([box for _, box in planted], dtype=torch.float64).reshape(-1, 4)
        preds.append(
            {
                "boxes": torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1).float(),
                "scores": torch.rand(len(planted), generator=generator),
                "labels": torch.tensor([label_to_category_id.index(c) for c, _ in planted], dtype=torch.int64),
            }
        )
    return preds, image_ids
