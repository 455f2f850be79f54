"""The GPU check (``benchmarks/gpu_check.sh``): one table, in a few minutes on one CUDA GPU.

Rows: 16-mixed training and inference images/s and peak training memory of our model and
torchvision's at ``--size`` px, for each batch of ``--batches`` (models, images and timing as in
``model_vs_torchvision.py``: same weights, COCO-like shapes, ABBA rounds, medians); then a
``--steps``-step ``train.py data=shapes`` run under 16-mixed, which must end with exit code 0 and
no step skipped for a non-finite loss.

    python benchmarks/gpu_check.py                      # on a GPU: 800 px, batches 2 and 8, 200 steps
    OMP_NUM_THREADS=1 python benchmarks/gpu_check.py --device cpu --size 128 --batches 1 --repeats 1 --steps 2
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from model_vs_torchvision import inference, make_batch, make_models, peak_memory, print_table, timed_rounds, train_step

ROOT = Path(__file__).resolve().parents[1]
# train.py's end-of-run line (frcnn.lit.run_report.RunReport).
END_OF_RUN = re.compile(r"done: (\d+) steps .*; (\d+) skipped for a non-finite loss;")


def model_rows(device: torch.device, size: int, batch_size: int, precision: str, repeats: int) -> list[tuple[str, ...]]:
    """Training and inference images/s, and the peak memory of a training step (CUDA), both models."""
    models = make_models(size, device)
    batch = make_batch(batch_size, device)
    rows = []
    for label, run in (("training", train_step), ("inference", inference)):
        times = timed_rounds(models, run, batch, device, precision, repeats)
        speed = {name: batch_size / statistics.median(values) for name, values in times.items()}
        ratio = statistics.median(a / b for a, b in zip(times["torchvision"], times["frcnn"]))
        rows.append((f"{label}, {precision}, batch {batch_size}, images/s", f"{speed['torchvision']:.1f}", f"{speed['frcnn']:.1f}", f"{ratio:.2f}x as fast"))
    if device.type == "cuda":
        peak = {name: peak_memory(model, train_step, batch, device, precision) / 2**30 for name, model in models.items()}
        rows.append((f"peak memory, training, {precision}, batch {batch_size}, GiB", f"{peak['torchvision']:.2f}", f"{peak['frcnn']:.2f}", f"{peak['frcnn'] / peak['torchvision']:.2f}x"))
    del models, batch
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def shapes_run(device: torch.device, precision: str, steps: int, workdir: Path) -> tuple[str, ...]:
    """``train.py data=shapes`` for ``steps`` steps: its exit code, steps skipped and wall time."""
    run_dir = workdir / "shapes_run"
    command = [
        sys.executable, str(ROOT / "train.py"), "data=shapes", f"data.path={workdir / 'shapes'}",
        f"trainer.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}", "trainer.devices=1", f"trainer.precision={precision}",
        f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}", "logger=csv",
        "callbacks.rich_progress_bar=null", "callbacks.model_summary=null", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log = (run_dir / "train.log").read_text() if (run_dir / "train.log").is_file() else ""
    ended = END_OF_RUN.search(log)
    passed = result.returncode == 0 and ended is not None and int(ended[1]) == steps and int(ended[2]) == 0
    if not passed:
        print((result.stdout + result.stderr)[-3000:], file=sys.stderr)
    outcome = f"exit {result.returncode}, " + (f"{ended[2]} skipped of {ended[1]} steps" if ended else "no end-of-run line")
    return (f"train.py data=shapes, {precision}, {steps} steps", "", f"{outcome}, {seconds:.0f} s", "ok" if passed else "FAILED")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=800, help="shorter side after resizing")
    parser.add_argument("--batches", type=int, nargs="+", default=[2, 8], help="images per batch, one set of rows each")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds after one warm-up round")
    parser.add_argument("--steps", type=int, default=200, help="steps of the train.py data=shapes run")
    args = parser.parse_args()
    device = torch.device(args.device)
    # 16-bit mixed precision is a CUDA mode; the CPU dry run checks the script with bfloat16 autocast.
    precision = "16-mixed" if device.type == "cuda" else "bf16-mixed"
    torch.manual_seed(0)
    rows = [row for batch_size in args.batches for row in model_rows(device, args.size, batch_size, precision, args.repeats)]
    with tempfile.TemporaryDirectory() as workdir:
        rows.append(shapes_run(device, precision, args.steps, Path(workdir)))

    print_table(device, f"images resized to {args.size} px (max {args.size * 5 // 3}); medians of {args.repeats} rounds after one warm-up round", rows)
    return 0 if rows[-1][-1] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
