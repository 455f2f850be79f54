"""CPU inference of the exported file (onnxruntime) against torchvision's eager model and ours.

The three run torchvision's ``fasterrcnn_resnet50_fpn`` settings (91 classes, min size
``--size``, max size 5/3 of it, score threshold 0.05, 1000 proposals) with the same random
weights (torchvision's init, converted by ``frcnn.convert``), on the same 480 × 640 image,
one image per call, each given the original image (all three resize it inside). Rounds
alternate the order of the runners; the first round is dropped; speed-ups are the median of
the per-round ratios, images/s the median of each runner's times.

    python benchmarks/export_speed.py --size 800 --rounds 8 --threads 2 --levels extended all --openvino
    python benchmarks/export_speed.py --size 400 --rounds 12 --threads 2 --levels extended all --openvino
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torchvision.models.detection import fasterrcnn_resnet50_fpn

from frcnn.convert import from_torchvision
from frcnn.export.graph import ResizeSpec
from frcnn.export.to_onnx import export_detector
from frcnn.modeling import FasterRCNN

LEVELS = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
          "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}  # fmt: skip


def make_runners(
    size: int, threads: int, onnx_path: Path, levels: list[str], openvino: bool
) -> dict[str, Callable[[np.ndarray], int]]:
    max_size = size * 5 // 3
    torch.manual_seed(0)
    reference = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91, min_size=size, max_size=max_size).eval()
    ours = FasterRCNN.r50_fpn(num_classes=91, min_size=size, max_size=max_size).eval()
    ours.load_state_dict(from_torchvision(reference.state_dict()), strict=True)
    if not onnx_path.is_file():
        eager_resize = FasterRCNN.r50_fpn(num_classes=91, resize=False)
        eager_resize.load_state_dict(ours.state_dict())
        export_detector(eager_resize, ResizeSpec("keep_ratio", size, max_size, size), ["background"] + [str(i) for i in range(1, 91)], onnx_path)

    def eager(model: torch.nn.Module) -> Callable[[np.ndarray], int]:
        def run(image: np.ndarray) -> int:
            with torch.inference_mode():
                return len(model([torch.from_numpy(image[0]).float() / 255])[0]["boxes"])

        return run

    runners = {"torchvision eager": eager(reference), "frcnn eager": eager(ours)}
    for level in levels:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = LEVELS[level]
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        runners[f"onnxruntime ({level})"] = lambda image, session=session: len(session.run(["boxes"], {"images": image})[0])
    if openvino:
        import openvino as ov

        # float32 explicitly: on CPUs with bf16 instructions OpenVINO would otherwise compute in bfloat16.
        compiled = ov.Core().compile_model(str(onnx_path), "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
        runners["openvino (f32)"] = lambda image: len(compiled(image)[compiled.outputs[0]])
    return runners


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--levels", nargs="+", default=["all"], choices=sorted(LEVELS))
    parser.add_argument("--openvino", action="store_true", help="also the file in OpenVINO's runtime (pip install openvino)")
    parser.add_argument("--onnx", type=Path, default=None, help="the exported file (default: exported here, into a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = args.onnx or Path(folder) / "model.onnx"
        runners = make_runners(args.size, args.threads, onnx_path, args.levels, args.openvino)
        image = np.random.default_rng(0).integers(0, 256, (1, 3, 480, 640), dtype=np.uint8)
        names = list(runners)
        times: dict[str, list[float]] = {name: [] for name in names}
        for round_index in range(args.rounds + 1):
            order = names if round_index % 2 == 0 else names[::-1]
            for name in order:
                tic = time.perf_counter()
                runners[name](image)
                if round_index:  # the first round warms up (allocations, onnxruntime's first run)
                    times[name].append(time.perf_counter() - tic)
    load = os.getloadavg()
    print(f"size {args.size}, {args.threads} threads, {args.rounds} rounds, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"{'runner':<28} {'images/s':>9} {'vs torchvision':>15} {'vs frcnn eager':>15}")
    for name in names:
        vs = [statistics.median(r / t for r, t in zip(times[base], times[name])) for base in ("torchvision eager", "frcnn eager")]
        print(f"{name:<28} {1 / statistics.median(times[name]):>9.2f} {vs[0]:>14.2f}x {vs[1]:>14.2f}x")


if __name__ == "__main__":
    main()
