"""The data layer at scale, scaled down: how rows are dealt to 8 ranks x 4 workers, and how long a
resume takes to its first batch early and late in an epoch.

    python benchmarks/data_scale.py --out data_cache/scale

1. Partition: a Hub-schema parquet split of 40 shards of unequal sizes (row groups of 100 rows, as
   `datasets` writes image sets), dealt to 32 readers: rows per reader, every row once, rows each
   reader had to read (its share plus the row groups at its ends).
2. Resume: the time from `load_state_dict` to the first batch at the start, the middle and the end
   of an epoch, against a fresh start.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from frcnn.data.loader import StreamLoader
from frcnn.data.source import open_split
from frcnn.data.stream import DetectionStream
from frcnn.data.transforms import DetectionTransform, build_resize


def write_split(root: Path, split: str, shard_sizes: list[int], image_side: int, rows_per_group: int = 100) -> Path:
    """`root/split/NNN.parquet` in the Hub schema: noise JPEGs, one box each; returns `root`."""
    (root / split).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    encoded = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (image_side, image_side, 3), dtype=np.uint8)).save(encoded, format="JPEG")
    image = encoded.getvalue()
    image_id = 0
    for shard, size in enumerate(shard_sizes):
        ids = list(range(image_id, image_id + size))
        image_id += size
        table = pa.table(
            {
                "image_id": pa.array(ids, pa.int64()),
                "image": [{"bytes": image, "path": None}] * size,
                "width": pa.array([image_side] * size, pa.int64()),
                "height": pa.array([image_side] * size, pa.int64()),
                "objects": [
                    {"bbox_id": [i], "category": [i % 80], "bbox": [[2.0, 2.0, image_side - 2.0, image_side - 2.0]], "area": [1]}
                    for i in ids
                ],
            }
        )
        pq.write_table(table, root / split / f"{shard:03d}.parquet", row_group_size=rows_per_group)
    return root


class _CountingSource:
    """Wraps a source to count the rows its unit reads return."""

    def __init__(self, source) -> None:
        self.source, self.rows_returned = source, 0

    def __getattr__(self, name):
        return getattr(self.source, name)

    def read_unit(self, unit: int):
        rows = self.source.read_unit(unit)
        self.rows_returned += len(rows)
        return rows


def partition(root: Path, shard_sizes: list[int]) -> None:
    source = _CountingSource(open_split(str(root), "train"))
    stream = DetectionStream(source, DetectionTransform(build_resize("none", 0, 0, 0)), num_classes=81, train=True, batch_size=2)
    stream.set_layout(rank=0, world_size=8, num_workers=4)
    counts, read, seen = [], [], []
    start = time.perf_counter()
    for reader in range(32):
        source.rows_returned = 0
        ids = [int(target["image_id"]) for _, target in stream.samples_of(reader)]
        counts.append(len(ids))
        read.append(source.rows_returned)
        seen += ids
    elapsed = time.perf_counter() - start
    sizes = np.diff(source.source.unit_starts)
    print(f"split: {source.num_rows} rows in {len(source.files)} shards of {min(shard_sizes)}..{max(shard_sizes)} rows, row groups of <= {sizes.max()}")
    print(f"8 ranks x 4 workers = 32 readers, batch 2: rows per reader {min(counts)}..{max(counts)} (equal: {len(set(counts)) == 1})")
    print(f"rows read once in the epoch: {len(set(seen))} of {len(seen)}; carried to the next epoch: {source.num_rows - len(seen)}")
    print(f"rows each reader read from parquet: {min(read)}..{max(read)} for a share of {counts[0]} (split / 32 = {source.num_rows / 32:.0f})")
    print(f"({elapsed:.1f} s for all 32 readers in one process)")


def time_to_first_batch(root: Path, num_workers: int, batch_size: int = 4) -> None:
    source = open_split(str(root), "train")
    stream = DetectionStream(
        source, DetectionTransform(build_resize("keep_ratio", 256, 333, 0)), num_classes=81, train=True,
        batch_size=batch_size, shuffle_block=1000,
    )  # fmt: skip
    loader = StreamLoader(stream, batch_size, num_workers=num_workers)
    batches = len(loader)
    print(f"\nresume, {source.num_rows} rows, {batches} batches of {batch_size} per epoch, num_workers={num_workers}:")
    iterator = iter(loader)
    reference = {}
    for index in range(batches):
        next(iterator)
        if index + 1 in (1, batches // 2, batches - 2):
            reference[index + 1] = loader.state_dict()
    del iterator
    for label, state in [("fresh start", None), *((f"after batch {k}", s) for k, s in reference.items())]:
        fresh = StreamLoader(stream, batch_size, num_workers=num_workers)
        start = time.perf_counter()
        if state is not None:
            fresh.load_state_dict(state)
        next(iter(fresh))
        print(f"  {label:>18}: first batch in {time.perf_counter() - start:.2f} s")



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data_cache/scale")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    shard_sizes = [60 + (37 * shard) % 90 for shard in range(40)]  # 40 shards of 60..149 rows
    partition(write_split(Path(args.out) / "partition", "train", shard_sizes, image_side=16), shard_sizes)
    large = write_split(Path(args.out) / "resume", "train", [1000] * 12, image_side=320)
    for num_workers in args.workers:
        time_to_first_batch(large, num_workers)


if __name__ == "__main__":
    main()
