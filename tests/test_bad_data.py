"""End to end: `train.py` completes over data with planted bad rows and files, and reports them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from frcnn.data import row_checks as kinds
from frcnn.data.sources.shapes import ensure_shapes
from tests.data.bad_rows import expected_counts, planted_rows, sixteen_bit_png, write_bad_split

ROOT = Path(__file__).resolve().parents[1]


def _run_train(args: list[str], cwd: Path, script: str = "train.py") -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HYDRA_FULL_ERROR="0")
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _without_data(tiny_overrides: list[str]) -> list[str]:
    """The tiny run's overrides without the shapes data choice, path and generation options."""
    return [o for o in tiny_overrides if not o.startswith(("data=", "data.path=", "data.shapes."))] + [
        "callbacks.rich_progress_bar=null",
    ]


@pytest.mark.slow
def test_planted_parquet_rows_are_skipped_and_counted(tiny_overrides, shapes_dir, tmp_path):
    """Good shapes rows to train on; a val split holding one row of every row-level case."""
    ensure_shapes(shapes_dir, num_train=32, num_val=4)
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    for shard in (Path(shapes_dir) / "train").glob("*.parquet"):
        shutil.copy(shard, data / "train" / shard.name)
    rows, expected = planted_rows()
    write_bad_split(data, "val", rows)
    run_dir = tmp_path / "run"
    result = _run_train(
        [*_without_data(tiny_overrides), "data=coco", f"data.path={data}", "data.val_limit=null", "data.max_skip_fraction=1.0",
         "trainer.val_check_interval=1000", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Traceback" not in output, output[-3000:]
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    for kind, count in expected_counts(expected).items():
        assert events.Scalars(f"data/skipped_{kind}")[-1].value == count, kind
        assert re.search(rf"{kind}\D{{0,40}}\b{count}\b", output), f"{kind}={count} not in the log"

    evaluated = _run_train([f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", "visualize=0", f"hydra.run.dir={tmp_path / 'eval'}"], tmp_path, "evaluate.py")
    assert evaluated.returncode == 0 and "Traceback" not in evaluated.stdout + evaluated.stderr, evaluated.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["data_problems"] == dict(expected_counts(expected))
    assert "data: " + ", ".join(f"{kind}={count}" for kind, count in sorted(expected_counts(expected).items())) in evaluated.stdout


@pytest.mark.slow
def test_coco_folder_with_bad_files_trains_and_names_them(tiny_overrides, tmp_path):
    """A missing image file, an unknown category id, a corrupt image and a 16-bit image beside
    good images: the run completes, each problem in one line naming the file or the id."""
    split_dir = tmp_path / "data" / "train"
    (split_dir / "images").mkdir(parents=True)
    for image_id in range(1, 7):
        Image.new("RGB", (96, 80), (40 * image_id, 90, 90)).save(split_dir / "images" / f"{image_id}.jpg")
    (split_dir / "images" / "7.png").write_bytes(sixteen_bit_png(96, 80)[0])
    (split_dir / "images" / "8.jpg").write_bytes(b"not a jpeg")
    images = [{"id": i, "file_name": f"{i}.png" if i == 7 else f"{i}.jpg", "width": 96, "height": 80} for i in range(1, 10)]
    annotations = [
        {"id": 100 + i, "image_id": i, "category_id": 3, "bbox": [10, 10, 40, 30], "iscrowd": 0, "area": 1200} for i in range(1, 10)
    ] + [{"id": 200, "image_id": 1, "category_id": 42, "bbox": [5, 5, 20, 20], "iscrowd": 0, "area": 400}]
    coco = {"images": images, "annotations": annotations, "categories": [{"id": 3, "name": "car"}]}
    (split_dir / "instances.json").write_text(json.dumps(coco))
    (tmp_path / "data" / "val").symlink_to(split_dir)
    result = _run_train(
        [*_without_data(tiny_overrides), "data=coco_folder", f"data.path={tmp_path / 'data'}", "data.val_limit=null",
         "data.max_skip_fraction=0.5", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Traceback" not in output, output[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert f"1 image(s) have no file, e.g. {split_dir / 'images' / '9.jpg'}" in output
    assert "1 annotation(s) with an unknown category id (42)" in output
    assert re.search(r"image_id=8: undecodable_image", output)
