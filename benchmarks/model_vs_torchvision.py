"""Our Faster R-CNN against torchvision's, side by side in one run: one table.

Rows: training step (forward + backward) and inference time, bytes saved for backward
(``SavedTensorBytes``), host synchronisations per training step and per inference batch
(``HostSyncCounter``); on CUDA also 16-mixed (float16 autocast) times and peak memory.

Both models are torchvision's ``fasterrcnn_resnet50_fpn`` configuration as trained from
ImageNet weights (FrozenBN, layer2-layer4 trainable), with the same random weights
(torchvision's init, converted by ``frcnn.convert``), on the same float images of COCO-like
shapes, resized to ``--size``. ``--model frcnn_mobilenet_v3_large_320_fpn`` (or ``_fpn``)
compares torchvision's ``fasterrcnn_mobilenet_v3_large_320_fpn`` as its builder makes it
without weights (BatchNorm2d, every layer trainable: training from scratch) with ours built
from ``conf/model/<model>.yaml`` with ``norm=bn trainable_layers=6``. Timed runs alternate between the models (ABBA), the first
round is dropped; times are medians, speed-ups the median of the rounds' ratios. Runs on
CUDA when present, else on the CPU.

    OMP_NUM_THREADS=1 python benchmarks/model_vs_torchvision.py --size 400 --images 2 --repeats 5
    OMP_NUM_THREADS=1 python benchmarks/model_vs_torchvision.py --model frcnn_mobilenet_v3_large_320_fpn --size 320
    OMP_NUM_THREADS=1 python benchmarks/model_vs_torchvision.py --size 400 --images 2 --syncs-only
    python benchmarks/model_vs_torchvision.py --size 800 --images 4 --repeats 20   # on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from hydra import compose, initialize_config_dir
from torchvision.models.detection import FasterRCNN as TorchvisionFasterRCNN
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn, fasterrcnn_mobilenet_v3_large_fpn
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops import FrozenBatchNorm2d

from frcnn.checkpoint import instantiate_model
from frcnn.convert import from_torchvision
from frcnn.modeling import FasterRCNN
from frcnn.ops.probes import HostSyncCounter, SavedTensorBytes

COCO_LIKE_SHAPES = ((480, 640), (427, 640), (640, 480), (612, 612), (375, 500), (640, 427), (500, 375), (480, 640))
MOBILENET_BUILDERS = {
    "frcnn_mobilenet_v3_large_fpn": fasterrcnn_mobilenet_v3_large_fpn,
    "frcnn_mobilenet_v3_large_320_fpn": fasterrcnn_mobilenet_v3_large_320_fpn,
}


def make_models(size: int, device: torch.device, model: str = "frcnn_r50_fpn") -> dict[str, torch.nn.Module]:
    if model in MOBILENET_BUILDERS:
        reference = MOBILENET_BUILDERS[model](weights=None, weights_backbone=None, num_classes=91, min_size=size, max_size=size * 5 // 3)
        ours = _from_conf(
            model,
            ["model.num_classes=91", "model.backbone.norm=bn", "model.backbone.trainable_layers=6", "model.transform.resize=true",
             f"model.transform.min_size={size}", f"model.transform.max_size={size * 5 // 3}"],
        )
        ours.load_state_dict(from_torchvision(reference.state_dict()), strict=True)
        return {"torchvision": reference.to(device), "frcnn": ours.to(device)}
    backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=FrozenBatchNorm2d, trainable_layers=3)
    reference = TorchvisionFasterRCNN(backbone, num_classes=91, min_size=size, max_size=size * 5 // 3)
    ours = FasterRCNN.r50_fpn(num_classes=91, min_size=size, max_size=size * 5 // 3)
    ours.load_state_dict(from_torchvision(reference.state_dict()), strict=True)
    return {"torchvision": reference.to(device), "frcnn": ours.to(device)}


def _from_conf(model: str, overrides: list[str]) -> torch.nn.Module:
    conf_dir = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir)):
        cfg = compose(config_name="train", overrides=[f"model={model}", *overrides])
    return instantiate_model(cfg.model)


def make_batch(num_images: int, device: torch.device) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    generator = torch.Generator().manual_seed(0)
    images, targets = [], []
    for index in range(num_images):
        height, width = COCO_LIKE_SHAPES[index % len(COCO_LIKE_SHAPES)]
        images.append(torch.rand((3, height, width), generator=generator).to(device))
        corner = torch.rand(8, 2, generator=generator) * torch.tensor([width, height]) * 0.7
        size = 16 + torch.rand(8, 2, generator=generator) * torch.tensor([width, height]) * 0.3
        boxes = torch.cat([corner, corner + size], dim=1)
        targets.append({"boxes": boxes.to(device), "labels": torch.randint(1, 91, (8,), generator=generator).to(device)})
    return images, targets


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16-mixed" else torch.float16)


def train_step(model, images, targets, device, precision) -> None:
    model.train()
    with autocast(device, precision):
        losses = model(images, targets)
    sum(losses.values()).backward()
    model.zero_grad(set_to_none=True)


def inference(model, images, targets, device, precision) -> None:
    model.eval()
    with torch.no_grad(), autocast(device, precision):
        model(images)


def synchronized(device: torch.device, fn: Callable[[], None]) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def timed_rounds(models, run, batch, device, precision, repeats) -> dict[str, list[float]]:
    """Seconds per run of each model over ABBA rounds; the first round warms up and is dropped."""
    times: dict[str, list[float]] = {name: [] for name in models}
    for repeat in range(repeats + 1):
        names = list(models) if repeat % 2 else list(models)[::-1]
        for name in names:
            elapsed = synchronized(device, lambda: run(models[name], *batch, device, precision))
            if repeat:
                times[name].append(elapsed)
    return times


def peak_memory(model, run, batch, device, precision) -> int:
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    run(model, *batch, device, precision)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def saved_bytes(model, batch, device, precision) -> tuple[int, int]:
    """Bytes saved for backward by one training forward, and the float32 part of them."""
    model.train()
    with autocast(device, precision), SavedTensorBytes(exclude=[*model.parameters(), *model.buffers()]) as saved:
        losses = model(*batch)
    del losses
    return saved.total, saved.by_dtype.get(torch.float32, 0)


def host_syncs(model, run, batch, device) -> int:
    run(model, *batch, device, "fp32")  # warm caches (anchors, folded weights) first
    with HostSyncCounter() as syncs:
        run(model, *batch, device, "fp32")
    return syncs.total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="frcnn_r50_fpn", choices=["frcnn_r50_fpn", *MOBILENET_BUILDERS])
    parser.add_argument("--size", type=int, default=None, help="shorter side after resizing (400 on CPU, 800 on CUDA)")
    parser.add_argument("--images", type=int, default=2, help="images per batch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-size", type=int, default=160, help="image size for the saved-bytes rows")
    parser.add_argument("--syncs-only", action="store_true", help="only the host-sync rows (no timing)")
    args = parser.parse_args()
    device = torch.device(args.device)
    size = args.size or (800 if device.type == "cuda" else 400)
    torch.manual_seed(0)
    models = make_models(size, device, args.model)
    batch = make_batch(args.images, device)
    rows: list[tuple[str, str, str, str]] = []

    def speed_rows(precision: str) -> None:
        for label, run in (("train step", train_step), ("inference", inference)):
            times = timed_rounds(models, run, batch, device, precision, args.repeats)
            t = {name: statistics.median(values) for name, values in times.items()}
            # The median of each round's ratio: both runs of a round saw the same machine load.
            speedup = statistics.median(a / b for a, b in zip(times["torchvision"], times["frcnn"]))
            rows.append((
                f"{label}, {precision}, s (images/s)",
                f"{t['torchvision']:.4f} ({args.images / t['torchvision']:.1f})",
                f"{t['frcnn']:.4f} ({args.images / t['frcnn']:.1f})",
                f"{speedup:.2f}× as fast",
            ))

    precisions = [] if args.syncs_only else ["fp32", "16-mixed"] if device.type == "cuda" else ["fp32"]
    for precision in precisions:
        speed_rows(precision)
    if device.type == "cuda":
        for precision in precisions:
            for label, run in (("train step", train_step), ("inference", inference)):
                peak = {name: peak_memory(model, run, batch, device, precision) for name, model in models.items()}
                rows.append((
                    f"peak CUDA memory, {label}, {precision}",
                    f"{peak['torchvision'] / 2**30:.2f} GiB",
                    f"{peak['frcnn'] / 2**30:.2f} GiB",
                    f"{peak['frcnn'] / peak['torchvision']:.2f}×",
                ))

    small = make_models(args.memory_size, device, args.model)
    small_batch = make_batch(2, device)
    autocast_precision = "16-mixed" if device.type == "cuda" else "bf16-mixed"
    for precision in () if args.syncs_only else ("fp32", autocast_precision):
        saved = {name: saved_bytes(model, small_batch, device, precision) for name, model in small.items()}
        rows.append((
            f"saved for backward, {precision}, 2 images at {args.memory_size} px, MiB (float32)",
            f"{saved['torchvision'][0] / 2**20:.1f} ({saved['torchvision'][1] / 2**20:.1f})",
            f"{saved['frcnn'][0] / 2**20:.1f} ({saved['frcnn'][1] / 2**20:.1f})",
            f"{saved['frcnn'][0] / saved['torchvision'][0]:.2f}×",
        ))
    for label, run in (("host syncs per training step", train_step), ("host syncs per inference batch", inference)):
        syncs = {name: host_syncs(model, run, batch, device) for name, model in models.items()}
        rows.append((label, str(syncs["torchvision"]), str(syncs["frcnn"]), f"{syncs['frcnn'] / syncs['torchvision']:.2f}×"))

    setting = f"{args.model}; {args.images} images resized to {size} px (max {size * 5 // 3}); medians of {args.repeats} after one warm-up round"
    print_table(device, setting, rows)


def print_table(device: torch.device, setting: str, rows: list[tuple[str, ...]]) -> None:
    """The device, the versions and ``setting`` in one line, then ``rows`` as one markdown table."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}, torchvision {torchvision.__version__}; {setting}")
    print("| measure | torchvision | frcnn | frcnn vs torchvision |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
