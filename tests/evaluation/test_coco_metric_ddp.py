"""COCOEvaluator under DDP (2 CPU processes, gloo): the ranks' images are gathered, a rank may
have evaluated none, an image evaluated by both counts once."""

import json
import os
import socket
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from coco_case import hand_built_case, hand_built_evaluator, image_ids

# Which images (indices into the hand-built case) each of the two ranks evaluates.
SPLITS = {
    "rank 1 evaluates nothing": ([0, 1, 2, 3, 4, 5, 6, 7], []),
    "image 4 on both ranks": ([0, 1, 2, 3, 4], [4, 5, 6, 7]),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, port: int, out_dir: str, test_dir: str) -> None:
    sys.path.insert(0, test_dir)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    warnings.filterwarnings("ignore", message="The ``compute`` method of metric")
    preds, rows = hand_built_case()
    results = {}
    for name, splits in SPLITS.items():
        evaluator = hand_built_evaluator()
        mine = splits[rank]
        for start in range(0, len(mine), 2):  # batches of 2
            batch = mine[start : start + 2]
            evaluator.update([preds[i] for i in batch], image_ids([rows[i] for i in batch]))
        results[name] = [evaluator.compute()[key].item() for key in ("map", "map_50", "mar_100", "map_small")]
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
def test_ranks_are_gathered(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path), str(Path(__file__).parent)), nprocs=2, join=True)
    preds, rows = hand_built_case()
    single = hand_built_evaluator()
    single.update(preds, image_ids(rows))
    expected = [single.compute()[key].item() for key in ("map", "map_50", "mar_100", "map_small")]
    for rank in (0, 1):
        results = json.loads((tmp_path / f"rank{rank}.json").read_text())
        for name in SPLITS:
            np.testing.assert_array_equal(results[name], expected, err_msg=f"rank {rank}, {name}")
