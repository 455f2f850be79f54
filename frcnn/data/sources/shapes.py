"""`Shapes`: a deterministic, learnable synthetic detection set written as parquet in the Hub schema.

Each image has a textured background and 0–5 shapes; the shape and its colour give the class:
blue rectangle = tv, orange ellipse = orange, green triangle = kite, red ellipse = apple.
Objects range from `min_object_side` (8 px by default) to most of the image and may occlude each
other; boxes are the shapes' full extents. Generated once into a folder (`train/*.parquet`, `val/*.parquet`, `meta.json`)
that the very same stream code as COCO then reads (`Shapes.open` → `open_split`). By hand:

    python -m frcnn.data.sources.shapes --out DIR --train 512 --val 64
"""

import argparse
import io
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import datasets
import numpy as np
from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
from PIL import Image, ImageDraw

from frcnn.data.coco_classes import COCO_CATEGORY_IDS, COCO_CLASSES
from frcnn.data.schema import hub_features
from frcnn.data.source import DataSource, ParquetSource, open_split

# (COCO category index, shape, RGB colour)
SHAPE_CLASSES: tuple[tuple[int, str, tuple[int, int, int]], ...] = (
    (62, "rectangle", (40, 80, 220)),  # tv
    (49, "ellipse", (245, 150, 20)),  # orange
    (33, "triangle", (30, 190, 60)),  # kite
    (47, "ellipse", (210, 30, 40)),  # apple
)
_SPLIT_CODES = {"train": 0, "val": 1}
_MIN_SIDE, _MAX_SIDE = 96, 256
_MAX_OBJECTS = 5
MIN_OBJECT_SIDE = 8


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A muted, low-frequency colour field plus pixel noise: (H, W, 3) uint8."""
    coarse = rng.uniform(60, 190, size=(rng.integers(2, 6), rng.integers(2, 6), 3)).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR), dtype=np.int16)
    noise = rng.normal(0, 12, size=(height, width, 1))
    return np.clip(field + noise, 0, 255).astype(np.uint8)


def _draw_objects(
    rng: np.random.Generator, image: Image.Image, min_side: float
) -> tuple[list[list[float]], list[int]]:
    """Draw 0–`_MAX_OBJECTS` shapes (later ones on top), about `min_side` px or larger; their xyxy
    boxes and category indices."""
    width, height = image.size
    draw = ImageDraw.Draw(image)
    boxes, categories = [], []
    for _ in range(rng.choice(_MAX_OBJECTS + 1, p=[0.1, 0.3, 0.25, 0.15, 0.1, 0.1])):
        category, shape, colour = SHAPE_CLASSES[rng.integers(len(SHAPE_CLASSES))]
        # Log-uniform size: small objects as often as large ones.
        side = np.exp(rng.uniform(np.log(min_side), np.log(0.8 * min(width, height))))
        box_w = int(np.clip(side * rng.uniform(0.6, 1.6), 6, width))
        box_h = int(np.clip(side * rng.uniform(0.6, 1.6), 6, height))
        x0, y0 = int(rng.integers(0, width - box_w + 1)), int(rng.integers(0, height - box_h + 1))
        x1, y1 = x0 + box_w, y0 + box_h
        fill = tuple(int(c) for c in np.clip(np.array(colour) + rng.integers(-20, 21, 3), 0, 255))
        if shape == "rectangle":
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill)
        elif shape == "ellipse":
            draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=fill)
        else:
            draw.polygon(((x0, y1 - 1), (x1 - 1, y1 - 1), ((x0 + x1 - 1) / 2, y0)), fill=fill)
        boxes.append([float(x0), float(y0), float(x1), float(y1)])
        categories.append(category)
    return boxes, categories


def make_row(seed: int, split: str, index: int, min_object_side: float = MIN_OBJECT_SIDE) -> dict:
    """Row `index` of `split`, a pure function of its arguments, in the Hub schema."""
    rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
    width, height = (int(side) for side in rng.integers(_MIN_SIDE, _MAX_SIDE + 1, size=2))
    image = Image.fromarray(_background(rng, height, width))
    boxes, categories = _draw_objects(rng, image, min_object_side)
    encoded = io.BytesIO()
    image.save(encoded, format="JPEG", quality=90)
    image_id = _SPLIT_CODES[split] * 1_000_000 + index + 1
    return {
        "image_id": image_id,
        "image": {"bytes": encoded.getvalue(), "path": None},
        "width": width,
        "height": height,
        "objects": {
            "bbox_id": [image_id * 100 + k for k in range(len(boxes))],
            "category": categories,
            "bbox": boxes,
            "area": [int((x1 - x0) * (y1 - y0)) for x0, y0, x1, y1 in boxes],
        },
    }


def write_split(out: Path, split: str, num_images: int, num_shards: int, seed: int, min_object_side: float) -> None:
    """Write `num_images` rows of `split` as `out/{split}/{split}-0000k-of-0000n.parquet`."""
    (out / split).mkdir(parents=True, exist_ok=True)
    features = hub_features()
    bars_were_on = not are_progress_bars_disabled()
    disable_progress_bars()
    try:
        for shard, indices in enumerate(np.array_split(np.arange(num_images), num_shards)):
            rows = [make_row(seed, split, int(index), min_object_side) for index in indices]
            columns = {name: [row[name] for row in rows] for name in features}
            shard_file = out / split / f"{split}-{shard:05d}-of-{num_shards:05d}.parquet"
            datasets.Dataset.from_dict(columns, features=features).to_parquet(str(shard_file))
    finally:
        if bars_were_on:
            enable_progress_bars()


def ensure_shapes(
    out: str | os.PathLike,
    num_train: int = 512,
    num_val: int = 64,
    seed: int = 0,
    train_shards: int = 4,
    val_shards: int = 2,
    min_object_side: float = MIN_OBJECT_SIDE,
) -> Path:
    """Generate the shapes set into `out` unless it is already there; returns `out`.

    `min_object_side`: the smallest objects' side in px (sides are log-uniform from it to 0.8 of
    the image's shorter side); `meta.json` records it where it is not the default, so that sets
    made before the option existed stay valid.

    Safe when several processes (DDP ranks) start at once: each writes a private temporary
    folder and renames it into place; the first rename wins and the others are discarded.
    """
    out = Path(out).expanduser()
    meta = {"version": 1, "train": num_train, "val": num_val, "seed": seed,
            "train_shards": train_shards, "val_shards": val_shards}  # fmt: skip
    if min_object_side != MIN_OBJECT_SIDE:
        meta["min_object_side"] = min_object_side
    if not (out / "meta.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
        write_split(tmp, "train", num_train, train_shards, seed, min_object_side)
        write_split(tmp, "val", num_val, val_shards, seed, min_object_side)
        (tmp / "meta.json").write_text(json.dumps(meta))
        try:
            tmp.rename(out)
        except OSError:  # another process finished first
            shutil.rmtree(tmp)
    found = json.loads((out / "meta.json").read_text())
    if found != meta:
        raise ValueError(f"{out} holds a shapes set made with {found}, not {meta}: delete it or choose another data.path")
    return out


class Shapes(DataSource):
    """The shapes set in `path`, generated there on first use; COCO's categories.

    Args:
        path: the set's folder (made by `prepare()` when it holds no `meta.json`).
        shapes: generation options, `ensure_shapes`' keywords (`num_train`, `num_val`, `seed`,
            `train_shards`, `val_shards`, `min_object_side`); a folder made with others is refused in one line.
    """

    def __init__(self, path: str | os.PathLike, shapes: Mapping[str, int] | None = None) -> None:
        self.path = Path(path).expanduser()
        self.options = dict(shapes or {})

    def prepare(self) -> None:
        ensure_shapes(self.path, **self.options)

    def folder_to_write(self) -> Path | None:
        return None if (self.path / "meta.json").is_file() else self.path

    def categories(self, split: str) -> tuple[list[str], list[int]]:
        return list(COCO_CLASSES), list(COCO_CATEGORY_IDS)

    def open(self, split: str) -> ParquetSource:
        return open_split(str(self.path), split)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to create")
    parser.add_argument("--train", type=int, default=512, help="training images")
    parser.add_argument("--val", type=int, default=64, help="validation images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-shards", type=int, default=4)
    parser.add_argument("--val-shards", type=int, default=2)
    parser.add_argument("--min-object-side", type=float, default=MIN_OBJECT_SIDE, help="smallest objects' side in px")
    args = parser.parse_args()
    out = ensure_shapes(
        args.out, args.train, args.val, args.seed, args.train_shards, args.val_shards, args.min_object_side
    )
    print(f"shapes: {args.train} train / {args.val} val images in {out}")


if __name__ == "__main__":
    main()
