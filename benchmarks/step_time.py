"""Time a training step (model forward + backward + AdamW, no data loading) for several model configs.

    python benchmarks/step_time.py "" "model/backbone=resnet18_fpn" \\
        "model/backbone=resnet18_fpn model.backbone.out_channels=64 model.roi_heads.box_head.representation_size=128"

Each argument is one config: space-separated overrides on top of `experiment=shapes_quick` (""
is the experiment as it is). Every config trains on the same batch of 4 generated shapes images
(resized by the model's own transform); configs run in interleaved rounds and the median
seconds per step is printed. Use on an idle machine: other processes on the cores skew the times.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from frcnn.checkpoint import instantiate_model
from frcnn.data.decode import decode_rgb
from frcnn.data.sources.shapes import make_row

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def shapes_batch(size: int = 4) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """``size`` uint8 ``[3, H, W]`` shapes images (with at least one object) and their targets."""
    images, targets = [], []
    index = 0
    while len(images) < size:
        row = make_row(0, "train", index, min_object_side=16)
        index += 1
        if not row["objects"]["bbox"]:
            continue
        images.append(decode_rgb(row["image"]))
        boxes = torch.tensor(row["objects"]["bbox"], dtype=torch.float32)
        targets.append({"boxes": boxes, "labels": torch.randint(1, 5, (len(boxes),))})
    return images, targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="+", help='overrides of one config, space-separated ("" = as is)')
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: one per core)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    runs = {}
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for config in args.configs:
            overrides = ["experiment=shapes_quick", "model.num_classes=81", *config.split()]
            model = instantiate_model(compose("train", overrides=overrides).model).train()
            optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
            runs[config] = (model, optimizer, [])
    images, targets = shapes_batch()

    for round_index in range(args.rounds + 1):  # round 0 warms up
        for model, optimizer, times in runs.values():
            start = time.perf_counter()
            loss = sum(model(images, targets).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if round_index:
                times.append(time.perf_counter() - start)
    for config, (model, _, times) in runs.items():
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{statistics.median(times):.3f} s/step  {params:5.1f} M params  {config or '(experiment=shapes_quick)'}")


if __name__ == "__main__":
    main()
