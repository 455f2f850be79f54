"""Peak host memory of an R50-FPN training forward and step, by objects per image (CPU).

    python benchmarks/matching_memory.py [--objects 2 40] [--images 4] [--size 800]

Images of `size` x `size` px, `objects` random boxes each; memory is `PeakHostMemory` (bytes malloc
had handed out at once, read after every op: exact, unlike the resident set size). Anchor
matching used to build one [B, G, A] IoU tensor (A ~ 160k anchors at 800 x 800); it now holds one
image's chunk of at most 2^20 IoUs (`frcnn.modeling.matcher.match_image`).
"""

from __future__ import annotations

import argparse

import torch

from frcnn.modeling import FasterRCNN
from frcnn.ops.probes import PeakHostMemory


def peak_mib(num_objects: int, num_images: int, size: int) -> tuple[float, float]:
    """(forward, whole step) peak MiB above the memory held before the forward."""
    torch.manual_seed(0)
    model = FasterRCNN.r50_fpn(num_classes=81, min_size=size, max_size=size * 5 // 3).train()
    generator = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=generator) for _ in range(num_images)]
    targets = []
    for _ in images:
        corners = torch.rand(num_objects, 2, generator=generator) * size * 0.75
        sides = 20 + torch.rand(num_objects, 2, generator=generator) * size * 0.22
        labels = torch.randint(1, 81, (num_objects,), generator=generator)
        targets.append({"boxes": torch.cat([corners, corners + sides], dim=1), "labels": labels})
    with PeakHostMemory() as step:
        with PeakHostMemory() as forward:
            losses = model(images, targets)
        sum(losses.values()).backward()
    return forward.peak_bytes / 2**20, step.peak_bytes / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, nargs="+", default=[2, 40])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", type=int, default=800)
    args = parser.parse_args()
    for num_objects in args.objects:
        forward, step = peak_mib(num_objects, args.images, args.size)
        print(f"{args.images} images x {num_objects:>3} objects at {args.size} px: forward {forward:,.0f} MiB, step {step:,.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
