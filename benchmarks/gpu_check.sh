#!/usr/bin/env bash
# The GPU check: one table in at most 8 minutes on one CUDA GPU: 16-mixed training and inference
# images/s and peak training memory of ours vs torchvision at 800 px (batches 2 and 8), and a
# 200-step `train.py data=shapes` run under 16-mixed that must skip no step. Exit code 0 when that
# run passed. Options go to benchmarks/gpu_check.py, e.g. a CPU dry run of the script itself:
#   OMP_NUM_THREADS=1 benchmarks/gpu_check.sh --device cpu --size 128 --batches 1 --repeats 1 --steps 2
set -euo pipefail
cd "$(dirname "$0")/.."
exec timeout 480 python benchmarks/gpu_check.py "$@"
