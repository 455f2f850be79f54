"""Evaluate a checkpoint with COCO mAP: `python evaluate.py ckpt=PATH [data=...] [data.path=...] [limit=N] [gt_json=FILE]`.

Runs the model over the val split (every image, empty ones too; `limit=N`: the first N), maps
the boxes to original pixels and scores them by the official COCO protocol against the split's
stored annotations (boxes, areas, crowds, ids untouched), or with `gt_json=instances_val2017.json`
against that file (its ids must be the data's; only the evaluated images are scored). Prints the
12-number COCO table and per-class AP, and writes to the run folder (outputs/eval/DATE/TIME):

    metrics.json       the 12 numbers (AP, AP50, ..., ARl), per-class AP, counts, timings
    detections.json    COCO results with the dataset's ids: image_id, category_id, bbox [x, y, w, h], score
    ground_truth.json  the ground truth of the evaluated images (a COCO instances file)
    pictures/*.png     `visualize=N` images with detections (or `proposals=true`: RPN proposals)
    results/VOC2007/   for a VOC devkit (data=voc): the devkit's results files; metrics.json and the
                       printout add VOC07 and VOC2010+ mAP, per class too (docs/voc.md)
    tensorboard/       the same pictures and numbers

pycocotools over the two json files reproduces metrics.json (and over detections.json and the
gt_json file itself, when every image of the file was evaluated). See conf/evaluate.yaml for how
the checkpoint's config and the command line combine.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from frcnn.evaluation import COCOEvaluator, GroundTruthError, evaluate_coco, load_ground_truth_json, write_json
from frcnn.detector import build_model, resolve_device
from frcnn.evaluation.checkpoint import CheckpointError, load_checkpoint
from frcnn.evaluation.ground_truth import check_same_ids, left_out_message
from frcnn.evaluation.inference import in_original_pixels, predict
from frcnn.evaluation.report import format_coco_table, format_per_class_table, write_metrics
from frcnn.evaluation.visualize import draw_detections, draw_proposals, save_picture
from frcnn.evaluation.voc_report import voc_report
from frcnn.progress import image_progress

# Groups of the training config that a command-line choice replaces wholesale.
TRAINING_GROUPS = ("data", "model")


def merged_config(cfg: DictConfig, stored: dict[str, Any], overrides: list[str]) -> DictConfig:
    """The checkpoint's training config with the command line's training groups and keys on top.

    Args:
        cfg: this run's composed config (evaluate.yaml + command line).
        stored: the checkpoint's resolved training config ({} for a bare state dict: then
            the composed ``model`` and ``data`` are used as they are).
        overrides: the command line (``HydraConfig.get().overrides.task``).
    """
    if not stored:  # the model stays unresolved: its stages interpolate model.num_classes, set from the data
        return OmegaConf.create(
            {group: OmegaConf.to_container(cfg[group], resolve=group != "model") for group in TRAINING_GROUPS}
        )
    merged = OmegaConf.create(stored)
    evaluate_keys = set(cfg) - set(TRAINING_GROUPS) - {"paths"}
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        top = key.split(".")[0]
        if top in evaluate_keys or top == "hydra" or override.package is not None:
            continue
        if key in TRAINING_GROUPS:
            merged[key] = OmegaConf.to_container(cfg[key], resolve=True)
        elif override.is_delete():
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(merged, parent) if parent else merged
            if node is not None and leaf in node:
                node.pop(leaf)
        else:
            OmegaConf.update(merged, key, OmegaConf.select(cfg, key, throw_on_missing=True), force_add=True)
    return merged


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run the whole evaluation; returns what metrics.json holds."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    checkpoint = load_checkpoint(cfg.ckpt)
    config = merged_config(cfg, checkpoint.cfg, list(HydraConfig.get().overrides.task))
    config.data.val_limit = cfg.limit
    if cfg.batch_size is not None:
        config.data.batch_size = cfg.batch_size

    datamodule = hydra.utils.instantiate(config.data, _convert_="all")
    datamodule.setup("validate")
    class_names = list(datamodule.class_names)
    model_classes = len(checkpoint.class_names) if checkpoint.class_names else config.model.get("num_classes")
    if not checkpoint.is_bare and model_classes != datamodule.num_classes:
        raise CheckpointError(
            f"the checkpoint's model has {model_classes} classes, the data {datamodule.num_classes}: "
            f"evaluate it on data with the same classes"
        )
    ground_truth, source = ground_truth_of(cfg, datamodule)
    device = resolve_device(cfg.device)
    if checkpoint.is_bare:
        config.model.num_classes = datamodule.num_classes
    model_cfg = OmegaConf.to_container(config.model, resolve=True)
    model = build_model(checkpoint, model_cfg).to(device)
    amp_dtype = getattr(torch, cfg.amp_dtype) if cfg.amp_dtype else None

    evaluator = COCOEvaluator(datamodule.label_to_category_id, ground_truth=ground_truth)
    to_draw: list[tuple] = []
    tic = time.perf_counter()
    num_images = 0
    with image_progress("evaluate") as progress:
        task = progress.add_task("evaluate", total=datamodule.val_dataset.num_rows)
        for images, targets, detections in predict(model, datamodule.val_dataloader(), device, amp_dtype):
            evaluator.update(in_original_pixels(detections, targets), [target["image_id"] for target in targets])
            num_images += len(images)
            for drawn in zip(images, targets, detections):
                if len(to_draw) < cfg.visualize:
                    to_draw.append(drawn)
            progress.advance(task, len(images))
    inference_s = time.perf_counter() - tic

    tic = time.perf_counter()
    ground_truth, results = evaluator.coco_ground_truth(), evaluator.coco_results()
    write_json(ground_truth, run_dir / "ground_truth.json")
    write_json(results, run_dir / "detections.json")
    voc = voc_report(datamodule, ground_truth, results, run_dir)  # None unless the data is a VOC devkit
    summary = evaluate_coco(ground_truth, results, copy_inputs=False)
    scoring_s = time.perf_counter() - tic

    left_out = ground_truth.get("info", {}).get("left_out", {})
    data_problems = datamodule.val_dataset.problem_counts()
    metrics = write_metrics(
        summary,
        run_dir / "metrics.json",
        num_images=len(ground_truth["images"]),
        num_detections=len(results),
        ground_truth=source,
        num_ground_truth_images=len(evaluator.ground_truth["images"]),
        num_annotations_left_out=left_out.get("annotations", 0),
        data_problems=data_problems,
        ckpt=str(Path(cfg.ckpt).expanduser().resolve()),
        seconds={"inference": round(inference_s, 3), "scoring": round(scoring_s, 3)},
        **(voc.metrics if voc else {}),
    )
    print(format_coco_table(summary.stats))
    print(format_per_class_table(summary))
    if voc:
        print(voc.table)
    print(
        f"ground truth: {source}; scored the {len(ground_truth['images'])} evaluated images of its "
        f"{len(evaluator.ground_truth['images'])} ({len(ground_truth['annotations'])} annotations)"
    )
    if message := left_out_message(ground_truth):
        print(message)
    if data_problems:
        print("data: " + ", ".join(f"{kind}={count}" for kind, count in sorted(data_problems.items())) + " (rows skipped, boxes dropped, rows repaired; see the warnings)")
    print(
        f"{num_images} images, {len(results)} detections: inference {inference_s:.1f} s, "
        f"scoring {scoring_s:.1f} s. Results in {run_dir}"
    )

    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(run_dir / "tensorboard")) as writer:
        for name, value in summary.as_dict().items():
            writer.add_scalar(f"eval/{name}", value)
        for image, target, detection in to_draw:
            picture = _picture(cfg, model, device, amp_dtype, image, target, detection, class_names)
            image_id = int(target["image_id"])
            save_picture(picture, run_dir / "pictures" / f"{image_id}.png")
            writer.add_image(f"eval/{'proposals' if cfg.proposals else 'detections'}/{image_id}", picture)
    return json.loads(metrics.read_text())


def ground_truth_of(cfg: DictConfig, datamodule: Any) -> tuple[dict[str, Any], str]:
    """(the ground truth to score against, where it comes from): the val split's stored
    annotations, or the ``gt_json`` file after checking that its ids are the data's.

    Raises:
        GroundTruthError: ``gt_json`` unreadable, or its image or category ids not the data's.
    """
    split_ground_truth = datamodule.val_ground_truth()
    if not cfg.gt_json:
        return split_ground_truth, f"the stored annotations of the {datamodule.val_split} split"
    path = Path(cfg.gt_json).expanduser().resolve()
    ground_truth = load_ground_truth_json(path)
    check_same_ids(
        ground_truth,
        image_ids=[image["id"] for image in split_ground_truth["images"]],
        category_ids=datamodule.label_to_category_id[1:],
        name=f"gt_json={path}",
    )
    return ground_truth, f"gt_json={path}"


def _picture(cfg, model, device, amp_dtype, image, target, detection, class_names) -> torch.Tensor:
    """One picture in the input image's pixels: detections, or the top RPN proposals."""
    if cfg.proposals:
        with torch.inference_mode(), torch.autocast(device.type, dtype=amp_dtype, enabled=device.type == "cuda" and amp_dtype is not None):
            proposals = model.proposals([image.to(device)])[0].float().cpu()
        return draw_proposals(image, proposals, cfg.num_proposals, gt_boxes=target["boxes"])
    return draw_detections(
        image,
        detection["boxes"],
        detection["scores"],
        detection["labels"],
        target["boxes"],
        target["labels"],
        class_names=class_names,
        score_threshold=cfg.draw_score_thresh,
    )


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    except (CheckpointError, GroundTruthError) as error:
        print(f"evaluate.py: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
