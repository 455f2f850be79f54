"""Loader throughput: stream the shapes parquet through the training loader with 0, 1, 2 workers.

    python benchmarks/loader_speed.py --out data_cache/shapes-bench --images 512 --workers 0 1 2
"""

import argparse
import time

from frcnn.data.datamodule import DetectionDataModule
from frcnn.data.sources.shapes import Shapes


def images_per_second(dm: DetectionDataModule) -> tuple[float, int]:
    """Images/s and images of one full training epoch (the first batch's start-up included)."""
    dm.setup("fit")
    start = time.perf_counter()
    num_images = sum(len(images) for images, _ in dm.train_dataloader())
    return num_images / (time.perf_counter() - start), num_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data_cache/shapes-bench", help="shapes folder (generated if absent)")
    parser.add_argument("--images", type=int, default=512, help="training images to generate")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--min-size", type=int, default=192)
    parser.add_argument("--max-size", type=int, default=333)
    args = parser.parse_args()
    for num_workers in args.workers:
        dm = DetectionDataModule(
            source=Shapes,
            path=args.out,
            shapes={"num_train": args.images, "num_val": 16},
            batch_size=args.batch_size,
            num_workers=num_workers,
            min_size=args.min_size,
            max_size=args.max_size,
        )
        dm.prepare_data()
        rate, num_images = images_per_second(dm)
        print(f"num_workers={num_workers}: {rate:7.1f} images/s ({num_images} images, batch {args.batch_size})")


if __name__ == "__main__":
    main()
