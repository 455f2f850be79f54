"""What the validation loss costs per image: ``python benchmarks/val_loss_cost.py [--size 512] [--images 2] [--repeats 9]``.

Times a validation batch through the detector in evaluation mode, as ``validation_step`` runs
it, without (``model(images)``) and with the loss (``model.detect_with_losses(images, targets,
generator)``): R50-FPN with its default test settings (1000 proposals per image), images of
COCO-like aspect ratios resized to ``--size`` with 4-8 boxes each. Rounds alternate the order
(ABBA), the first round is dropped; the extra cost is the median of each round's ratio. This is
the model pass only: loading and COCO scoring, the same in both, make the share of a whole
validation smaller.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from frcnn.modeling import FasterRCNN

ASPECTS = ((480, 640), (427, 640), (640, 480), (500, 375))


def batch(size: int, num_images: int, device: torch.device) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    generator = torch.Generator().manual_seed(0)
    images, targets = [], []
    for index in range(num_images):
        height, width = ASPECTS[index % len(ASPECTS)]
        scale = size / min(height, width)
        height, width = round(height * scale), round(width * scale)
        images.append(torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator).to(device))
        count = int(torch.randint(4, 9, (1,), generator=generator))
        corners = torch.rand(count, 2, generator=generator) * torch.tensor([width * 0.7, height * 0.7])
        sides = 16 + torch.rand(count, 2, generator=generator) * torch.tensor([width * 0.3, height * 0.3])
        targets.append({"boxes": torch.cat([corners, corners + sides], 1).to(device), "labels": torch.randint(1, 81, (count,), generator=generator).to(device)})
    return images, targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = FasterRCNN.r50_fpn(num_classes=81, resize=False).to(device).eval()
    images, targets = batch(args.size, args.images, device)

    def run(with_loss: bool) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        tic = time.perf_counter()
        with torch.inference_mode():
            if with_loss:
                model.detect_with_losses(images, targets, torch.Generator(device).manual_seed(0))
            else:
                model(images)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - tic

    plain, with_loss, ratios = [], [], []
    for round_index in range(args.repeats + 1):
        order = (False, True) if round_index % 2 == 0 else (True, False)
        times = {mode: run(mode) for mode in order}
        if round_index:
            plain.append(times[False])
            with_loss.append(times[True])
            ratios.append(times[True] / times[False])
    per_image = statistics.median(plain) / args.images
    per_image_loss = statistics.median(with_loss) / args.images
    print(f"device {device}, {args.images} images at {args.size} px, {args.repeats} rounds")
    print(f"validation pass per image: {per_image * 1000:.1f} ms; with the loss {per_image_loss * 1000:.1f} ms")
    print(f"extra cost of the loss: {100 * (statistics.median(ratios) - 1):+.1f} % (median of per-round ratios)")


if __name__ == "__main__":
    main()
